//! `--state FILE`: totals survive a graceful restart; damaged or foreign
//! files are refused whole with a clear error.

use std::time::Duration;

use client::{PushConfig, PushState, Pusher};
use nix::sys::signal::Signal;
use protocol::Desc;

use crate::util::{bin, cmd, tool, wait_for, Proxy, TempDir};

const RUN: &str = "tau_metric_proxy_run_total{operation=\"exec\"}";

fn pusher(p: &Proxy) -> (Pusher, client::MetricId) {
    let mut cfg = PushConfig::new(p.socket.clone(), "state-test");
    cfg.retry_every = Duration::ZERO;
    let mut pusher = Pusher::new(cfg);
    let id = pusher.register(Desc::counter("kept_total", &[], "Kept across restarts"));
    (pusher, id)
}

#[test]
fn totals_survive_a_graceful_restart_and_live_collectors_are_not_counted_twice() {
    let dir = TempDir::new("state");
    let state = dir.join("proxy.state");
    let mut p = Proxy::with_state(dir, &state, &[]);
    assert!(p.log().contains(&format!("no state file {} yet: starting empty", state.display())), "{}", p.log());
    for _ in 0..3 {
        p.tool("tau_metric_proxy_run").args(["--", "true"]).run().assert_success();
    }
    let (mut live, id) = pusher(&p);
    live.add(id, 5);
    assert_eq!(live.flush(), PushState::Sent);
    assert_eq!(p.wait_value("kept_total", 5.0), 5.0);

    assert_eq!(p.stop_with(Signal::SIGTERM).code(), Some(0));
    let log = p.log();
    assert!(
        log.contains("saved state of ") && log.contains(&format!(" counter series to {}", state.display())),
        "{log}"
    );
    let dir = std::mem::replace(&mut p.dir, TempDir::new("moved"));
    let p = Proxy::with_state(dir, &state, &[]);
    assert!(p.log().contains(&format!("counter series from state file {}", state.display())), "{}", p.log());
    assert_eq!(p.value(RUN), 3.0);
    assert_eq!(p.value("kept_total"), 5.0);
    // The live collector reconnects and resyncs its total of 7: 2 are new.
    live.add(id, 2);
    let sent =
        wait_for(Duration::from_secs(10), || (live.flush() == PushState::Sent && live.is_connected()).then_some(()));
    assert!(sent.is_some());
    assert_eq!(p.wait_value("kept_total", 7.0), 7.0);
}

#[test]
fn periodic_saves_survive_a_crash() {
    let dir = TempDir::new("periodic");
    let state = dir.join("proxy.state");
    let mut p = Proxy::with_state(dir, &state, &["--state-interval", "1"]);
    let (mut c, id) = pusher(&p);
    c.add(id, 42);
    assert_eq!(c.finish(), PushState::Sent);
    assert_eq!(p.wait_value("kept_total", 42.0), 42.0);
    // Wait for a periodic save that holds the 42 (an earlier one may not).
    let saved = wait_for(Duration::from_secs(10), || {
        let snap = proxy_core::Snapshot::from_bytes(&std::fs::read(&state).ok()?).ok()?;
        let (store, _) = proxy_core::Store::restore(proxy_core::Limits::default(), snap).ok()?;
        (store.get(&["kept_total".to_owned()]).ok()?[0].value == 42.0).then_some(())
    });
    assert!(saved.is_some(), "no periodic save held the total");
    p.kill();
    let dir = std::mem::replace(&mut p.dir, TempDir::new("moved"));
    let p = Proxy::with_state(dir, &state, &[]);
    assert_eq!(p.value("kept_total"), 42.0);
}

fn start_fails(state: &std::path::Path) -> String {
    let out = tool("tau_metric_proxy")
        .arg("-u")
        .arg(state.with_extension("sock"))
        .args(["-p", "0", "--bind", "127.0.0.1", "--state"])
        .arg(state)
        .run();
    out.assert_exit(1);
    assert!(!state.with_extension("sock").exists(), "a refused start must not leave a socket: {out}");
    out.stderr()
}

#[test]
fn damaged_state_files_are_refused_whole() {
    let dir = TempDir::new("damaged");
    let state = dir.join("proxy.state");
    // A valid file first.
    let mut p = Proxy::with_state(TempDir::new("writer"), &state, &[]);
    let (c, _) = pusher(&p);
    drop(c);
    assert_eq!(p.stop_with(Signal::SIGTERM).code(), Some(0));
    let good = std::fs::read(&state).unwrap();

    std::fs::write(&state, &good[..good.len() - 3]).unwrap();
    let err = start_fails(&state);
    assert!(
        err.contains(&format!("cannot load state file {}: truncated or padded: payload of ", state.display())),
        "{err}"
    );
    assert!(err.contains("nothing was loaded (move the file away to start empty)"), "{err}");

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    std::fs::write(&state, &flipped).unwrap();
    assert!(start_fails(&state).contains("corrupt: checksum mismatch"));

    std::fs::write(&state, "not a state file").unwrap();
    assert!(start_fails(&state).contains("not a tau_metric_proxy state file (bad magic)"));
}

#[test]
fn state_files_through_symlinks_or_of_other_users_are_refused() {
    let dir = TempDir::new("foreign");
    let target = dir.join("elsewhere");
    std::fs::write(&target, "precious").unwrap();
    let link = dir.join("proxy.state");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(
        start_fails(&link).contains(&format!("refusing to read state file {}: it is a symbolic link", link.display()))
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");

    assert!(
        nix::unistd::geteuid().is_root(),
        "this test chowns a file to another user and needs root (CI runs as root)"
    );
    let foreign = dir.join("foreign.state");
    std::fs::write(&foreign, "x").unwrap();
    nix::unistd::chown(&foreign, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let err = start_fails(&foreign);
    assert!(
        err.contains(&format!("refusing to read state file {}: it belongs to uid 65534", foreign.display())),
        "{err}"
    );
}

#[test]
fn saving_replaces_a_planted_symlink_instead_of_writing_through_it() {
    let dir = TempDir::new("plant");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let state = dir.join("proxy.state");
    let mut p = Proxy::with_state(TempDir::new("planter"), &state, &[]);
    // Planted after the save at start, before the save at shutdown.
    let saved = wait_for(Duration::from_secs(10), || state.exists().then_some(()));
    assert!(saved.is_some(), "no save at start; log:\n{}", p.log());
    std::fs::remove_file(&state).unwrap();
    std::os::unix::fs::symlink(&victim, &state).unwrap();
    assert_eq!(p.stop_with(Signal::SIGTERM).code(), Some(0));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(&state).unwrap().file_type().is_file());
}

/// FNV-1a 64, the state file's payload checksum.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn two_huge_float_deltas_cannot_poison_the_state_and_a_poisoned_file_loses_one_series_only() {
    let dir = TempDir::new("poison");
    let state = dir.join("proxy.state");
    let mut p = Proxy::with_state(dir, &state, &[]);
    let (mut c, kept) = pusher(&p);
    let huge = c.register(Desc::counter("huge_total", &[], "Float counter"));
    c.add(kept, 5);
    c.add_float(huge, 1.7e308);
    assert_eq!(c.flush(), PushState::Sent);
    c.add_float(huge, 1.7e308);
    assert_eq!(c.flush(), PushState::Sent);
    let overflow = "tau_metric_proxy_refusals_total{reason=\"overflow\"}";
    assert_eq!(p.wait_value(overflow, 1.0), 1.0, "the second delta is refused and counted");
    assert_eq!(p.value("huge_total"), 1.7e308);
    drop(c);
    assert_eq!(p.stop_with(Signal::SIGTERM).code(), Some(0));
    let dir = std::mem::replace(&mut p.dir, TempDir::new("moved"));
    let mut p = Proxy::with_state(dir, &state, &[]);
    let (kept_v, huge_v) = (p.value("kept_total"), p.value("huge_total"));
    println!("after a restart: kept_total {kept_v}, huge_total {huge_v} (finite), overflow refusals before it 1");
    assert_eq!((kept_v, huge_v), (5.0, 1.7e308));
    assert_eq!(p.stop_with(Signal::SIGTERM).code(), Some(0));

    // The file an older daemon wrote: the sum saved as +Inf.
    let mut bytes = std::fs::read(&state).unwrap();
    let at = bytes.windows(8).position(|w| w == 1.7e308f64.to_le_bytes()).expect("the float total in the file");
    bytes[at..at + 8].copy_from_slice(&f64::INFINITY.to_le_bytes());
    let sum = fnv1a(&bytes[28..]);
    bytes[20..28].copy_from_slice(&sum.to_le_bytes());
    std::fs::write(&state, &bytes).unwrap();
    let dir = std::mem::replace(&mut p.dir, TempDir::new("moved"));
    let p = Proxy::with_state(dir, &state, &[]);
    let log = p.log();
    let skipped: Vec<&str> = log.lines().filter(|l| l.contains("skipped")).collect();
    println!("poisoned state file: {skipped:?}; kept_total {}", p.value("kept_total"));
    assert_eq!(skipped.len(), 1, "{}", p.log());
    assert!(
        skipped[0].ends_with(&format!(
            "state file {}: skipped 1 series that cannot be restored, they start again from zero: huge_total \
             (corrupt: series huge_total is not a valid counter)",
            state.display()
        )),
        "{}",
        skipped[0]
    );
    assert_eq!(p.value("kept_total"), 5.0);
    assert_eq!(p.value("tau_metric_proxy_refusals_total{reason=\"overflow\"}"), 1.0, "restored with the others");
    assert!(!p.values().contains_key("huge_total"));
}

#[test]
fn a_save_syncs_its_directory_and_a_crashed_saves_leftover_is_removed() {
    let dir = TempDir::new("durable");
    let (state, socket, trace) = (dir.join("proxy.state"), dir.join("proxy.sock"), dir.join("trace"));
    // What a daemon killed while saving leaves behind: its temporary file.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = dir.join(&format!(".proxy.state.{dead}.123.tmp"));
    std::fs::write(&stale, b"half a snapshot").unwrap();
    let daemon = cmd("strace")
        .args(["-f", "-qq", "-e", "trace=openat,rename,renameat,renameat2,fsync", "-o"])
        .arg(&trace)
        .arg(bin("tau_metric_proxy"))
        .arg("-u")
        .arg(&socket)
        .args(["-p", "0", "--bind", "127.0.0.1", "--state"])
        .arg(&state)
        .spawn();
    assert!(wait_for(Duration::from_secs(20), || socket.exists().then_some(())).is_some(), "the daemon did not start");
    assert!(!stale.exists(), "the crashed save's temporary file is still there");
    // SIGTERM to the daemon (strace's child): it saves, then stops.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", daemon.id())).unwrap();
    let pid: i32 = children.split_whitespace().next().expect("the daemon under strace").parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let out = daemon.finish_within(Duration::from_secs(20));
    out.assert_exit(0);
    assert!(
        out.stderr().contains(&format!("removed {}, left by a daemon that stopped while saving", stale.display())),
        "{out}"
    );
    // After the rename into place, the directory is opened and synced.
    let trace = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let renamed = lines
        .iter()
        .position(|l| l.contains("rename") && l.contains(&format!("\"{}\"", state.display())) && l.ends_with("= 0"))
        .unwrap_or_else(|| panic!("no rename into {}:\n{trace}", state.display()));
    let opened = format!("\"{}\", O_RDONLY|O_CLOEXEC) = ", dir.path().display());
    let fd = lines[renamed..]
        .iter()
        .find_map(|l| l.split(&opened).nth(1))
        .unwrap_or_else(|| panic!("the directory was not opened after the rename:\n{trace}"));
    assert!(
        lines[renamed..].iter().any(|l| l.contains(&format!("fsync({fd})")) && l.trim_end().ends_with("= 0")),
        "the directory (fd {fd}) was not synced after the rename:\n{trace}"
    );
    println!("state save: rename, then fsync of the directory (fd {fd}); a stale temporary file removed at start");
}
