//! The daemon as a user and an administrator meet it.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use client::{PushConfig, PushState, Pusher};
use nix::sys::signal::Signal;
use protocol::{Desc, Request, Role, Sample, Value, MAX_FRAME, VERSION};

use crate::util::{bin, identity, tool, wait_for, Proxy, RawPeer, TempDir};

fn line_pattern_ok(line: &str, message_prefix: &str) -> bool {
    // `INFO (module:line): message`, as the original daemon printed.
    let Some(rest) = line.strip_prefix("INFO (") else { return false };
    let Some((loc, msg)) = rest.split_once("): ") else { return false };
    let Some((module, lineno)) = loc.split_once(':') else { return false };
    !module.is_empty() && lineno.parse::<u32>().is_ok() && msg.starts_with(message_prefix)
}

#[test]
fn start_logs_both_servers_and_binds_owner_only() {
    let p = Proxy::start();
    let log = p.log();
    let lines: Vec<&str> = log.lines().collect();
    assert!(line_pattern_ok(lines[0], &format!("now listening on 127.0.0.1:{}", p.port)), "{log}");
    assert!(line_pattern_ok(lines[1], &format!("UNIX push gateway running on {}", p.socket.display())), "{log}");
    let mode = std::fs::metadata(&p.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // README.md shows these two lines for the default port and socket:
    // they must be what the daemon really prints.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let origin = |line: &str| line.split("): ").next().unwrap().to_owned() + "): ";
    for (line, shown) in [
        (lines[0], "now listening on 0.0.0.0:1337".to_owned()),
        (lines[1], "UNIX push gateway running on /tmp/tau_metric_proxy.1000.unix".to_owned()),
    ] {
        let want = format!("{}{shown}", origin(line));
        assert!(readme.contains(&want), "README.md should show {want:?}");
    }
}

#[test]
fn default_socket_path_follows_the_environment_variable() {
    let dir = TempDir::new("env");
    let socket = dir.join("from-env.sock");
    let mut child = Command::new(bin("tau_metric_proxy"))
        .args(["-p", "0", "--bind", "127.0.0.1"])
        .env("TAU_METRIC_PROXY", &socket)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = wait_for(Duration::from_secs(10), || socket.exists().then_some(()));
    let _ = child.kill();
    let _ = child.wait();
    assert!(up.is_some(), "daemon did not bind {}", socket.display());
}

#[test]
fn a_live_proxy_is_never_stolen() {
    let p = Proxy::start();
    let out = p.tool("tau_metric_proxy").args(["-p", "0", "--bind", "127.0.0.1"]).run();
    out.assert_exit(1);
    let err = out.stderr();
    assert!(err.contains(&format!("another tau_metric_proxy is already running on {}", p.socket.display())), "{out}");
    assert!(!err.contains("now listening"), "must fail before taking a port: {out}");
    // The first one still serves.
    p.client(&["-l", "-f", "txt"]).assert_exit(0);
}

#[test]
fn a_stale_socket_is_replaced() {
    let mut p = Proxy::start();
    p.kill(); // SIGKILL leaves the socket file behind
    assert!(p.socket.exists());
    let p = p.restart();
    assert!(p.log().contains(&format!("removing stale socket {}", p.socket.display())), "{}", p.log());
    p.client(&["-l"]).assert_exit(0);
}

#[test]
fn two_daemons_starting_together_on_a_stale_socket_leave_the_winner_its_socket() {
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let dir = TempDir::new("race");
        let socket = dir.join("proxy.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap()); // stale
        let start = || tool("tau_metric_proxy").arg("-u").arg(&socket).args(["-p", "0", "--bind", "127.0.0.1"]).spawn();
        let mut both = [start(), start()];
        // Exactly one gives up, saying why; the other serves on the socket.
        let loser = wait_for(Duration::from_secs(10), || (0..2).find(|&i| both[i].has_ended()));
        let Some(loser) = loser else {
            panic!("round {round}: both daemons kept running: one of them has lost its socket");
        };
        let [a, b] = both;
        let (lost, won) = if loser == 0 { (a, b) } else { (b, a) };
        let out = lost.wait();
        out.assert_exit(1);
        assert!(
            out.stderr().contains(&format!("another tau_metric_proxy is already running on {}", socket.display())),
            "{out}"
        );
        // The winner may still be binding: it answers within a bound.
        let list = || tool("tau_metric_client").arg("-u").arg(&socket).arg("-l").run();
        let served = wait_for(Duration::from_secs(10), || list().status().success().then_some(()));
        if served.is_none() {
            list().assert_success();
        }
        won.signal(Signal::SIGTERM);
        won.finish_within(Duration::from_secs(10)).assert_exit(0);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "round {round}: the daemon left {left:?} behind");
    }
    println!("{ROUNDS} rounds of two daemons started together on a stale socket: one served, one gave up");
}

#[test]
fn a_path_that_is_not_a_socket_is_left_alone() {
    let dir = TempDir::new("notsock");
    let path = dir.join("file");
    std::fs::write(&path, "precious").unwrap();
    let out = tool("tau_metric_proxy").arg("-u").arg(&path).args(["-p", "0"]).run();
    out.assert_exit(1);
    assert!(
        out.stderr().contains(&format!("{} exists and is not a socket; refusing to replace it", path.display())),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn sigterm_and_sigint_stop_cleanly_and_remove_the_socket() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut p = Proxy::start();
        let status = p.stop_with(sig);
        assert_eq!(status.code(), Some(0), "{sig}");
        assert!(!p.socket.exists(), "socket left behind after {sig}");
        let name = if sig == Signal::SIGTERM { "SIGTERM" } else { "SIGINT" };
        assert!(p.log().contains(&format!("received {name}, shutting down")), "{}", p.log());
    }
}

#[test]
fn bad_flags_give_one_line_and_status_2() {
    let out = tool("tau_metric_proxy").args(["--port", "notaport"]).run();
    out.assert_exit(2);
    let err = out.stderr();
    assert_eq!(err.lines().count(), 1, "{out}");
    assert!(err.starts_with("tau_metric_proxy: error: invalid value 'notaport' for '--port <PORT>'"), "{out}");
}

fn counter(name: &str) -> Desc {
    Desc::counter(name, &[("source", "test")], "A test counter")
}

/// Collector with id 0 registered as `name`.
fn collector(p: &Proxy, name: &str) -> RawPeer {
    let mut c = RawPeer::connect(&p.socket, Role::Collector);
    c.send(&Request::Hello { identity: identity("good") });
    c.send(&Request::Register { id: 0, desc: counter(name) });
    c
}

fn add(c: &mut RawPeer, n: u64) {
    c.send(&Request::Update { samples: vec![Sample { id: 0, value: Value::Int(n) }] });
}

#[test]
fn bad_frames_close_only_their_connection_and_lose_nothing() {
    let p = Proxy::start();
    let mut a = collector(&p, "a_total");
    let mut b = collector(&p, "b_total");
    add(&mut a, 5);
    add(&mut b, 7);
    // Malformed payload, oversized length prefix, out-of-order frame, wrong version.
    let mut garbage = RawPeer::connect(&p.socket, Role::Collector);
    garbage.send_raw(&[3, 0, 0, 0, 0xff, 0xff, 0xff]);
    let mut huge = RawPeer::connect(&p.socket, Role::Collector);
    huge.send_raw(&((MAX_FRAME as u32) + 1).to_le_bytes());
    let mut early = RawPeer::connect(&p.socket, Role::Collector);
    early.send(&Request::Update { samples: vec![Sample { id: 0, value: Value::Int(1) }] });
    let mut query_pushing = RawPeer::connect(&p.socket, Role::Query);
    query_pushing.send(&Request::Goodbye);
    for (what, peer) in
        [("garbage", &mut garbage), ("huge", &mut huge), ("early", &mut early), ("query", &mut query_pushing)]
    {
        assert!(peer.closed_by_daemon(), "{what} connection was not closed");
    }
    let mut wrong_version = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
    {
        use std::io::{Read, Write};
        let mut pre = protocol::Preamble::new(Role::Collector).encode();
        pre[4..6].copy_from_slice(&(VERSION + 1).to_le_bytes());
        wrong_version.write_all(&pre).unwrap();
        let mut theirs = Vec::new();
        wrong_version.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        wrong_version.read_to_end(&mut theirs).unwrap();
        // The daemon still says which version it speaks, then closes.
        assert_eq!(theirs, protocol::Preamble::new(Role::Daemon).encode());
    }
    add(&mut a, 1);
    add(&mut b, 1);
    assert_eq!(p.wait_value("a_total{source=\"test\"}", 6.0), 6.0);
    assert_eq!(p.wait_value("b_total{source=\"test\"}", 8.0), 8.0);
    assert_eq!(p.value("tau_metric_proxy_protocol_errors_total"), 5.0);
    let log = p.log();
    for expected in [
        "closing connection of peer: malformed frame:",
        &format!("closing connection of peer: frame of {} bytes exceeds the limit of {MAX_FRAME} bytes", MAX_FRAME + 1),
        "closing connection of peer: out-of-order frame: Update is not valid in state collector-before-hello",
        "closing connection of query client: out-of-order frame: Goodbye is not valid in state query",
        &format!(
            "closing connection of peer: refused: protocol version mismatch: this side speaks version {VERSION}, the peer speaks version {}",
            VERSION + 1
        ),
    ] {
        assert!(log.contains(expected), "missing {expected:?} in log:\n{log}");
    }
}

#[test]
fn a_client_of_another_version_gets_a_clear_error() {
    // A peer that answers with a newer protocol version.
    let dir = TempDir::new("vers");
    let path = dir.join("future.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut pre = [0u8; 8];
        s.read_exact(&mut pre).unwrap();
        let mut mine = protocol::Preamble::new(Role::Daemon).encode();
        mine[4..6].copy_from_slice(&7u16.to_le_bytes());
        s.write_all(&mine).unwrap();
    });
    let out = tool("tau_metric_client").arg("-u").arg(&path).arg("-l").run();
    server.join().unwrap();
    out.assert_exit(1).assert_stderr(&format!(
        "tau_metric_client: error: handshake with tau_metric_proxy failed: protocol version mismatch: \
         this side speaks version {VERSION}, the peer speaks version 7\n"
    ));
}

#[test]
fn registration_errors_go_to_that_collector_only() {
    let p = Proxy::start();
    let mut c = RawPeer::connect(&p.socket, Role::Collector);
    c.send(&Request::Hello { identity: identity("bad") });
    c.send(&Request::Register { id: 0, desc: Desc::counter("bad-name_total", &[], "x") });
    assert_eq!(c.recv(), protocol::Reply::Welcome { resumed: false });
    assert_eq!(
        c.recv(),
        protocol::Reply::Error { id: Some(0), message: "invalid metric name \"bad-name_total\"".into() }
    );
    // The connection stays usable.
    c.send(&Request::Register { id: 1, desc: counter("fine_total") });
    c.send(&Request::Update { samples: vec![Sample { id: 1, value: Value::Int(3) }] });
    assert_eq!(p.wait_value("fine_total{source=\"test\"}", 3.0), 3.0);
}

fn pusher(p: &Proxy) -> (Pusher, client::MetricId) {
    let mut cfg = PushConfig::new(p.socket.clone(), "pusher-test");
    cfg.retry_every = Duration::ZERO;
    let mut pusher = Pusher::new(cfg);
    let id = pusher.register(counter("pushed_total"));
    (pusher, id)
}

#[test]
fn a_restarted_daemon_gets_every_total_once() {
    let p = Proxy::start();
    let (mut pusher, id) = pusher(&p);
    pusher.add(id, 10);
    assert_eq!(pusher.flush(), PushState::Sent);
    assert_eq!(p.wait_value("pushed_total{source=\"test\"}", 10.0), 10.0);
    let p = p.restart();
    pusher.add(id, 5);
    // The first flush finds the old connection dead; a later one reconnects.
    let state = wait_for(Duration::from_secs(10), || {
        (pusher.flush() == PushState::Sent && pusher.is_connected()).then_some(())
    });
    assert!(state.is_some());
    assert_eq!(p.wait_value("pushed_total{source=\"test\"}", 15.0), 15.0);
    pusher.add(id, 1);
    assert_eq!(pusher.flush(), PushState::Sent);
    assert_eq!(p.wait_value("pushed_total{source=\"test\"}", 16.0), 16.0);
}

#[test]
fn a_reconnecting_collector_is_not_counted_twice() {
    let p = Proxy::start();
    let who = identity("reconnecting");
    let hello = Request::Hello { identity: who.clone() };
    let mut first = RawPeer::connect(&p.socket, Role::Collector);
    first.send(&hello);
    first.send(&Request::Register { id: 0, desc: counter("re_total") });
    add(&mut first, 4);
    assert_eq!(p.wait_value("re_total{source=\"test\"}", 4.0), 4.0);
    drop(first);
    // Same process, new connection: it resends its totals (4 already
    // counted, then 6 once it counted 2 more).
    let mut second = RawPeer::connect(&p.socket, Role::Collector);
    second.send(&hello);
    second.send(&Request::Register { id: 0, desc: counter("re_total") });
    second.send(&Request::Resync { samples: vec![Sample { id: 0, value: Value::Int(4) }] });
    second.send(&Request::Resync { samples: vec![Sample { id: 0, value: Value::Int(6) }] });
    assert_eq!(p.wait_value("re_total{source=\"test\"}", 6.0), 6.0);
    // A third connection of the same collector supersedes the second,
    // which is closed and can no longer add anything.
    let mut third = RawPeer::connect(&p.socket, Role::Collector);
    third.send(&hello);
    third.send(&Request::Register { id: 0, desc: counter("re_total") });
    third.send(&Request::Resync { samples: vec![Sample { id: 0, value: Value::Int(6) }] });
    add(&mut third, 1);
    assert_eq!(p.wait_value("re_total{source=\"test\"}", 7.0), 7.0);
    add(&mut second, 100);
    assert!(second.closed_by_daemon());
    assert_eq!(p.value("re_total{source=\"test\"}"), 7.0);
    assert_eq!(p.value("tau_metric_proxy_protocol_errors_total"), 0.0);
}

#[test]
fn the_proxy_sums_many_collectors_exactly() {
    let p = Proxy::start();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let socket = p.socket.clone();
            std::thread::spawn(move || {
                let mut pusher = Pusher::new(PushConfig::new(socket, "many"));
                let id = pusher.register(counter("sum_total"));
                for i in 0..200u64 {
                    pusher.add(id, t * 1000 + i);
                    if i % 20 == 0 {
                        pusher.flush();
                    }
                }
                assert_eq!(pusher.finish(), PushState::Sent);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let expected: u64 = (0..16u64).map(|t| (0..200u64).map(|i| t * 1000 + i).sum::<u64>()).sum();
    assert_eq!(p.wait_value("sum_total{source=\"test\"}", expected as f64), expected as f64);
    assert_eq!(p.value("tau_metric_proxy_collectors"), 0.0);
}

#[test]
fn a_symlink_or_another_users_socket_is_never_replaced() {
    let dir = TempDir::new("sockown");
    // A symbolic link planted at the socket path, pointing at a file.
    let target = dir.join("target-file");
    std::fs::write(&target, "precious").unwrap();
    let link = dir.join("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = tool("tau_metric_proxy").arg("-u").arg(&link).args(["-p", "0"]).run();
    out.assert_exit(1);
    assert!(
        out.stderr().contains(&format!("{} exists and is not a socket; refusing to replace it", link.display())),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());

    // A stale socket that belongs to another user.
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test chowns a socket to another user and needs root (CI runs as root)"
    );
    let theirs = dir.join("theirs.sock");
    drop(std::os::unix::net::UnixListener::bind(&theirs).unwrap());
    nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let out = tool("tau_metric_proxy").arg("-u").arg(&theirs).args(["-p", "0"]).run();
    out.assert_exit(1);
    assert!(
        out.stderr()
            .contains(&format!("{} belongs to uid 65534, not to uid 0; refusing to replace it", theirs.display())),
        "{out}"
    );
    assert!(theirs.exists());
}
