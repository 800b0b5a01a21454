//! Who may connect to the socket: owner-only by default, others only when
//! allowed with `--allow-uid` / `--allow-group`, checked by peer credentials.
//! The other users are played with `setpriv`, which needs root (as in CI).

use std::os::unix::fs::PermissionsExt;

use crate::util::{bin, cmd, tool, Proxy, Run};

/// Runs `tau_metric_client -u SOCKET ARGS` as `uid:gid`.
fn client_as(uid: u32, gid: u32, p: &Proxy, args: &[&str]) -> Run {
    assert!(nix::unistd::geteuid().is_root(), "these tests switch users with setpriv and need root (CI runs as root)");
    cmd("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(bin("tau_metric_client"))
        .arg("-u")
        .arg(&p.socket)
        .args(args)
        .hint("setpriv (util-linux)")
        .run()
}

/// Lets other users reach the socket file itself.
fn open_dir(p: &Proxy) {
    std::fs::set_permissions(p.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn another_user_cannot_use_an_owner_only_socket() {
    let p = Proxy::start();
    open_dir(&p);
    assert_eq!(std::fs::metadata(&p.socket).unwrap().permissions().mode() & 0o777, 0o600);
    client_as(65534, 65534, &p, &["-l"]).assert_exit(1).assert_stderr(&format!(
        "tau_metric_client: error: no tau_metric_proxy is running on {}: Permission denied (os error 13)\n",
        p.socket.display()
    ));
}

#[test]
fn allowed_users_and_groups_get_in_and_others_are_refused_and_counted() {
    let p = Proxy::start_with(&["--allow-uid", "65534", "--allow-group", "4242"]);
    open_dir(&p);
    assert!(p.log().contains("socket also open to uids [65534] and groups [4242]"), "{}", p.log());
    assert_eq!(std::fs::metadata(&p.socket).unwrap().permissions().mode() & 0o777, 0o666);
    // Allowed by uid, then by group.
    for (uid, gid) in [(65534, 65534), (4000, 4242)] {
        let out = client_as(uid, gid, &p, &["-g", "tau_metric_proxy_frames_total", "-f", "txt"]);
        out.assert_exit(0);
        assert!(out.stdout().starts_with("# name ts value\ntau_metric_proxy_frames_total "), "{out}");
    }
    // Neither: the kernel lets it connect, the proxy refuses it.
    let out = client_as(4001, 4001, &p, &["-l"]);
    out.assert_exit(1);
    assert!(out.stderr().starts_with("tau_metric_client: error: "), "{out}");
    assert!(p.log().contains("refused connection from uid 4001 (pid "), "{}", p.log());
    assert!(p.log().contains("only the proxy's user may connect (see --allow-uid and --allow-group)"));
    assert_eq!(p.value("tau_metric_proxy_refused_connections_total"), 1.0);
}

#[test]
fn unknown_users_and_groups_are_errors() {
    for (flag, name, message) in [
        ("--allow-uid", "no-such-user-xyz", "--allow-uid: no such user \"no-such-user-xyz\""),
        ("--allow-group", "no-such-group-xyz", "--allow-group: no such group \"no-such-group-xyz\""),
    ] {
        let out = tool("tau_metric_proxy").args([flag, name, "-p", "0"]).run();
        out.assert_exit(1);
        assert!(out.stderr().contains(message), "{out}");
    }
}

/// Frames of a collector session: preamble, hello, then `reqs`.
fn session_bytes(reqs: &[protocol::Request]) -> Vec<u8> {
    use protocol::{encode_frame, Preamble, Request, Role};
    let mut b = Preamble::new(Role::Collector).encode().to_vec();
    encode_frame(&Request::Hello { identity: crate::util::identity("intruder") }, &mut b).unwrap();
    for r in reqs {
        encode_frame(r, &mut b).unwrap();
    }
    b
}

/// The error messages in a daemon's reply bytes (after its preamble).
fn error_messages(bytes: &[u8]) -> Vec<String> {
    let mut at = protocol::PREAMBLE_LEN.min(bytes.len());
    let mut out = Vec::new();
    while let Ok(Some((reply, used))) = protocol::decode_frame::<protocol::Reply>(&bytes[at..]) {
        if let protocol::Reply::Error { message, .. } = reply {
            out.push(message);
        }
        at += used;
    }
    out
}

#[test]
fn another_user_cannot_hijack_series_pre_register_shared_names_or_write_self_metrics() {
    use client::{PushConfig, PushState, Pusher};
    use protocol::{Desc, Kind, Request, Sample, Scale, Value};
    let dir = crate::util::TempDir::new("hijack");
    let helper = crate::util::compile(&dir, "sock_send", false);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = Proxy::start_with(&["--allow-uid", "65534"]);
    open_dir(&p);
    // The proxy's user (root here) counts its own series and an MPI call.
    let mut mine = Pusher::new(PushConfig::new(p.socket.clone(), "owner"));
    let victim = mine.register(Desc::counter("victim_total", &[], "Owned by root"));
    let send = mine.register(Desc::counter("mpi_hits_total", &[("function", "MPI_Send")], "Calls"));
    mine.add(victim, 5);
    mine.add(send, 3);
    assert_eq!(mine.flush(), PushState::Sent);
    assert_eq!(p.wait_value("victim_total", 5.0), 5.0);

    let max = |id| Sample { id, value: Value::Int(u64::MAX) };
    let attack = session_bytes(&[
        Request::Register { id: 0, desc: Desc::counter("victim_total", &[], "Mine now") },
        Request::Update { samples: vec![max(0)] },
        Request::Register { id: 1, desc: Desc::gauge("mpi_time", &[], "OpenMetrics name of mpi_time_total") },
        Request::Register {
            id: 2,
            desc: Desc::new("mpi_time_total", &[("function", "MPI_Recv")], "t", Kind::Counter, Scale::One),
        },
        Request::Register { id: 3, desc: Desc::counter("tau_metric_proxy_frames_total", &[], "f") },
        Request::Register { id: 4, desc: Desc::counter("mpi_hits_total", &[("function", "MPI_Send")], "Calls") },
        // With root's 3, the node's counter reaches exactly 2^64 - 1.
        Request::Update { samples: vec![Sample { id: 4, value: Value::Int(u64::MAX - 3) }] },
    ]);
    let out = cmd("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&helper)
        .arg(&p.socket)
        .arg("1000")
        .input(attack)
        .hint("setpriv (util-linux)")
        .run();
    out.assert_success();
    let errors = error_messages(out.stdout_bytes());
    println!("refusals sent to uid 65534: {errors:#?}");
    assert_eq!(
        errors,
        [
            "victim_total belongs to another user of this proxy: choose another metric name",
            "update for a series id that was not registered",
            "name conflict: \"mpi_time\" would share the OpenMetrics family \"mpi_time\" with another metric",
            "unit conflict: mpi_time_total{function=\"MPI_Recv\"} was registered with another scale",
            "tau_metric_proxy_frames_total is reserved for the proxy's own metrics",
        ]
    );
    // Root's counter is untouched; the node's MPI counter took the other
    // user's delta but still counts root's calls instead of sticking at
    // 2^64 - 1 (4096 is the spacing of doubles there).
    mine.add(send, 4096);
    assert_eq!(mine.flush(), PushState::Sent);
    let reason = |r: &str| format!("tau_metric_proxy_refusals_total{{reason=\"{r}\"}}");
    let shown = crate::util::wait_for(std::time::Duration::from_secs(5), || {
        let v = p.values();
        (v[&reason("foreign_family")] == 1.0).then_some(v)
    })
    .expect("the refusal is counted");
    assert_eq!(shown["victim_total"], 5.0);
    assert_eq!(shown["mpi_hits_total{function=\"MPI_Send\"}"], 18446744073709555712.0, "2^64 + 4096");
    for (r, n) in [("reserved_name", 1.0), ("name_conflict", 1.0), ("unit_conflict", 1.0), ("overflow", 0.0)] {
        assert_eq!(shown[&reason(r)], n, "{r}");
    }
    println!(
        "victim_total stays {}, mpi_hits_total{{function=\"MPI_Send\"}} = {} after the other user's 2^64-1",
        shown["victim_total"], shown["mpi_hits_total{function=\"MPI_Send\"}"]
    );
}

/// A real daemon run as uid 65534 on `dir/planted.sock`, letting root in.
fn daemon_as_nobody(dir: &crate::util::TempDir) -> (crate::util::Running, std::path::PathBuf) {
    let socket = dir.join("planted.sock");
    let daemon = cmd("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("tau_metric_proxy"))
        .arg("-u")
        .arg(&socket)
        .args(["-p", "0", "--bind", "127.0.0.1", "--allow-uid", "0"])
        .hint("setpriv (util-linux)")
        .spawn();
    let up = crate::util::wait_for(std::time::Duration::from_secs(10), || socket.exists().then_some(()));
    assert!(up.is_some(), "the daemon of uid 65534 did not start");
    (daemon, socket)
}

#[test]
fn a_socket_planted_by_another_user_in_a_shared_directory_gets_nothing() {
    // A directory anyone may write, like /tmp.
    let dir = crate::util::TempDir::new("planted");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (_daemon, socket) = daemon_as_nobody(&dir);
    let refusal = format!(
        "refusing {}: it is served by uid 65534, neither this user (uid 0) nor the owner of a directory only that \
         owner can write; nothing was sent",
        socket.display()
    );
    tool("tau_metric_client")
        .arg("-u")
        .arg(&socket)
        .arg("-l")
        .run()
        .assert_exit(1)
        .assert_stderr(&format!("tau_metric_client: error: {refusal}\n"));
    tool("tau_metric_proxy_run")
        .arg("-u")
        .arg(&socket)
        .args(["--", "true"])
        .run()
        .assert_exit(0)
        .assert_stderr(&format!("tau_metric_proxy_run: warning: {refusal}\n"));
    tool("tau_strace")
        .arg("-u")
        .arg(&socket)
        .arg("true")
        .run()
        .assert_exit(0)
        .assert_stderr(&format!("tau_strace: warning: {refusal}\n"));
    // The planted daemon received no frame from any of them.
    let frames = cmd("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("tau_metric_client"))
        .arg("-u")
        .arg(&socket)
        .args(["-g", "tau_metric_proxy_frames_total,tau_metric_proxy_run_total", "-f", "txt"])
        .run();
    frames
        .assert_exit(1)
        .assert_stderr("tau_metric_client: error: no such metric in the proxy: tau_metric_proxy_run_total\n");
    println!("a socket of uid 65534 in a shared directory: client, launcher and tau_strace sent nothing");
}

#[test]
fn a_service_users_socket_in_its_own_directory_is_trusted() {
    // Like the system unit's runtime directory: only its owner writes there.
    let dir = crate::util::TempDir::new("service");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let (_daemon, socket) = daemon_as_nobody(&dir);
    tool("tau_metric_proxy_run").arg("-u").arg(&socket).args(["--", "true"]).run().assert_exit(0).assert_stderr("");
    let out = tool("tau_metric_client")
        .arg("-u")
        .arg(&socket)
        .args(["-g", "tau_metric_proxy_run_total{operation=\"exec\"}", "-f", "txt"])
        .run();
    out.assert_exit(0);
    assert!(out.stdout().ends_with(" 1\n"), "{out}");
}
