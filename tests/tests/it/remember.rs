//! Collectors whose process still runs are never forgotten, so never
//! counted twice when they come back: not at the `--max-remembered` cap,
//! not when their thread-group leader is a zombie, not after a `--state`
//! restart; and a collector is told (`Welcome`) whether it was known.

use std::io::Read;
use std::time::Duration;

use protocol::{decode_frame, encode_frame, Desc, Identity, Preamble, Reply, Request, Role, Sample, Value};

use crate::util::{compile, identity, Proxy, RawPeer, TempDir};

/// A collector session's bytes: preamble, hello, one counter and a
/// Resync of its total.
fn session(id: &Identity, name: &str, total: u64) -> Vec<u8> {
    let mut b = Preamble::new(Role::Collector).encode().to_vec();
    for req in [
        Request::Hello { identity: id.clone() },
        Request::Register { id: 0, desc: Desc::counter(name, &[], "Remembered") },
        Request::Resync { samples: vec![Sample { id: 0, value: Value::Int(total) }] },
    ] {
        encode_frame(&req, &mut b).unwrap();
    }
    b
}

/// Runs a session on a new connection and returns every reply once the
/// daemon has handled it (the peer closes its side, the daemon closes).
fn run_session(p: &Proxy, bytes: &[u8]) -> Vec<Reply> {
    let mut s = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut s, bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let mut at = protocol::PREAMBLE_LEN;
    let mut replies = Vec::new();
    while let Some((r, used)) = decode_frame::<Reply>(&got[at..]).unwrap() {
        replies.push(r);
        at += used;
    }
    replies
}

/// Waits until the daemon's housekeeping (once a second) has run twice.
fn after_housekeeping() {
    std::thread::sleep(Duration::from_millis(2200));
}

#[test]
fn at_the_remembered_cap_live_collectors_stay_and_new_ones_are_refused() {
    let p = Proxy::start_with(&["--max-remembered", "2"]);
    let ids: Vec<Identity> = (0..3).map(|_| identity("capped")).collect();
    // Three connected at once, then all three disconnect: a disconnection
    // is never refused, so three wait with the cap at two.
    let peers: Vec<RawPeer> = ids
        .iter()
        .map(|id| {
            let mut c = RawPeer::connect(&p.socket, Role::Collector);
            c.send_raw(&session(id, "capped_total", 1)[protocol::PREAMBLE_LEN..]);
            assert_eq!(c.recv(), Reply::Welcome { resumed: false });
            c
        })
        .collect();
    assert_eq!(p.wait_value("capped_total", 3.0), 3.0);
    drop(peers);
    after_housekeeping();
    // Three disconnected collectors of a live process (this one): none was
    // folded, so each comes back resumed and counts nothing twice.
    assert_eq!(p.value("tau_metric_proxy_remembered_collectors"), 3.0);
    let newcomer = run_session(&p, &session(&identity("late"), "late_total", 1));
    let refused = "2 disconnected collectors whose processes still run are remembered: no new collector until \
                   some come back or end (see --max-remembered)";
    assert_eq!(newcomer, [Reply::Error { id: None, message: refused.into() }]);
    for id in &ids {
        assert_eq!(run_session(&p, &session(id, "capped_total", 1)), [Reply::Welcome { resumed: true }]);
    }
    assert_eq!(p.value("capped_total"), 3.0);
    assert_eq!(p.value("late_total"), 0.0);
    assert_eq!(p.value("tau_metric_proxy_refusals_total{reason=\"remembered_limit\"}"), 1.0);
    println!("--max-remembered 2 with 3 live collectors: none folded, all 3 resumed, 1 newcomer refused");
}

#[test]
fn a_collector_whose_leader_thread_exited_is_not_folded() {
    let dir = TempDir::new("zombie");
    let helper = compile(&dir, "zombie_leader", false);
    let p = Proxy::start();
    let id = identity("zombie");
    let (first, second) = (dir.join("first"), dir.join("second"));
    std::fs::write(&first, session(&id, "zombie_total", 5)).unwrap();
    std::fs::write(&second, session(&id, "zombie_total", 5)).unwrap();
    // Between its two sessions the leader is a zombie for 2.5 s while the
    // other thread runs: the daemon's housekeeping sees it twice.
    crate::util::cmd(&helper).arg(&p.socket).arg(&first).arg(&second).arg("2500").run().assert_success();
    assert_eq!(p.value("zombie_total"), 5.0, "counted once");
    println!("a collector whose leader was a zombie for 2.5 s: counted once");
}

#[test]
fn a_restored_collector_is_judged_by_its_kernel_process_not_its_claims() {
    let dir = TempDir::new("claims");
    let (socket, state) = (dir.join("proxy.sock"), dir.join("proxy.state"));
    let args = ["--state".to_owned(), state.to_str().unwrap().to_owned()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = Proxy::start_at(dir, socket.clone(), &args);
    // A collector (this live process, says the kernel) whose identity
    // claims a pid that has exited, as one in another pid namespace does.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let id = Identity { pid: dead_pid, start_time: 1, nonce: 77, program: "namespaced".into() };
    assert_eq!(run_session(&p, &session(&id, "claims_total", 5)), [Reply::Welcome { resumed: false }]);
    assert_eq!(p.wait_value("claims_total", 5.0), 5.0);
    assert_eq!(p.stop_with(nix::sys::signal::Signal::SIGTERM).code(), Some(0));
    let dir = std::mem::replace(&mut p.dir, TempDir::new("moved"));
    let p = Proxy::start_at(dir, socket, &args);
    after_housekeeping();
    assert_eq!(run_session(&p, &session(&id, "claims_total", 5)), [Reply::Welcome { resumed: true }]);
    assert_eq!(p.value("claims_total"), 5.0, "counted once across the restart");
    println!("a restored collector claiming an exited pid, alive by the kernel: resumed, counted once");
}

#[test]
fn a_version_1_collector_is_served_without_welcome() {
    let p = Proxy::start();
    let mut s = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let v1 = Preamble { version: 1, role: Role::Collector };
    let mut bytes = v1.encode().to_vec();
    let mut rest = session(&identity("old"), "old_total", 4);
    bytes.extend(rest.split_off(protocol::PREAMBLE_LEN));
    std::io::Write::write_all(&mut s, &bytes).unwrap();
    let mut theirs = [0u8; protocol::PREAMBLE_LEN];
    s.read_exact(&mut theirs).unwrap();
    assert_eq!(Preamble::decode(&theirs).unwrap(), Preamble { version: 1, role: Role::Daemon });
    assert_eq!(p.wait_value("old_total", 4.0), 4.0);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut more = Vec::new();
    s.read_to_end(&mut more).unwrap();
    assert!(more.is_empty(), "no Welcome for version 1: {more:?}");
}
