//! Replays the checked-in fuzz corpus (`fuzz/corpus/`) through the fuzz
//! entry points, so every CI run re-checks what fuzzing found.
#![forbid(unsafe_code)]

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        run(&bytes);
        n += 1;
    }
    n
}

#[test]
fn frames_corpus_replays_cleanly() {
    let n = replay("frames", proxy_core::fuzzing::frames);
    assert!(n >= 6, "the frames corpus has only {n} inputs");
}

#[test]
fn session_corpus_replays_cleanly() {
    let n = replay("session", proxy_core::fuzzing::session);
    assert!(n >= 6, "the session corpus has only {n} inputs");
}
