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
