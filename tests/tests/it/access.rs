//! Who may connect to the socket: owner-only by default, others only when
//! allowed with `--allow-uid` / `--allow-group`, checked by peer credentials.
//! The other users are played with `setpriv`, which needs root (as in CI).

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use crate::util::{bin, text, Proxy};

/// Runs `tau_metric_client -u SOCKET ARGS` as `uid:gid`.
fn client_as(uid: u32, gid: u32, p: &Proxy, args: &[&str]) -> Output {
    assert!(nix::unistd::geteuid().is_root(), "these tests switch users with setpriv and need root (CI runs as root)");
    Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(bin("tau_metric_client"))
        .arg("-u")
        .arg(&p.socket)
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
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
    let out = client_as(65534, 65534, &p, &["-l"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "tau_metric_client: error: no tau_metric_proxy is running on {}: Permission denied (os error 13)\n",
            p.socket.display()
        )
    );
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
        assert_eq!(out.status.code(), Some(0), "uid {uid}: {}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with("# name ts value\ntau_metric_proxy_frames_total "));
    }
    // Neither: the kernel lets it connect, the proxy refuses it.
    let out = client_as(4001, 4001, &p, &["-l"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("tau_metric_client: error: "), "{err}");
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
        let out = Command::new(bin("tau_metric_proxy")).args([flag, name, "-p", "0"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
    }
}
