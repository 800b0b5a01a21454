//! Who may connect to the UNIX socket: the proxy's own user, root, and the
//! users and groups given with `--allow-uid` / `--allow-group`, checked on
//! every connection with the kernel's peer credentials (`SO_PEERCRED`).

use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Group, Uid, User};

/// The access policy of the socket.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

/// A connecting process, as the kernel vouches for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    pub(crate) pid: i32,
    pub(crate) uid: u32,
    gid: u32,
}

impl Access {
    /// Resolves user and group names (or numbers) given on the command line.
    pub(crate) fn new(users: &[String], groups: &[String]) -> Result<Access, String> {
        let uids = users
            .iter()
            .map(|u| match u.parse::<u32>() {
                Ok(n) => Ok(n),
                Err(_) => match User::from_name(u) {
                    Ok(Some(user)) => Ok(user.uid.as_raw()),
                    _ => Err(format!("--allow-uid: no such user {u:?}")),
                },
            })
            .collect::<Result<_, _>>()?;
        let gids = groups
            .iter()
            .map(|g| match g.parse::<u32>() {
                Ok(n) => Ok(n),
                Err(_) => match Group::from_name(g) {
                    Ok(Some(group)) => Ok(group.gid.as_raw()),
                    _ => Err(format!("--allow-group: no such group {g:?}")),
                },
            })
            .collect::<Result<_, _>>()?;
        Ok(Access { uids, gids })
    }

    /// Whether anyone besides the proxy's user may connect; the socket is
    /// then created world-connectable and the peer check decides.
    pub(crate) fn is_shared(&self) -> bool {
        !self.uids.is_empty() || !self.gids.is_empty()
    }

    pub(crate) fn describe(&self) -> String {
        format!("uids {:?} and groups {:?}", self.uids, self.gids)
    }

    /// Checks a connected peer; `Err` carries its credentials for the log.
    pub(crate) fn check(&self, stream: &impl AsFd) -> Result<Peer, Option<Peer>> {
        let cred = getsockopt(stream, PeerCredentials).map_err(|_| None)?;
        let peer = Peer { pid: cred.pid(), uid: cred.uid(), gid: cred.gid() };
        let me = Uid::effective().as_raw();
        if peer.uid == me || peer.uid == 0 || self.uids.contains(&peer.uid) {
            return Ok(peer);
        }
        if !self.gids.is_empty() && (self.gids.contains(&peer.gid) || self.in_supplementary_group(peer.pid)) {
            return Ok(peer);
        }
        Err(Some(peer))
    }

    /// The peer's supplementary groups, from `/proc/PID/status`.
    fn in_supplementary_group(&self, pid: i32) -> bool {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
        status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .map(|g| g.split_whitespace().filter_map(|n| n.parse::<u32>().ok()).any(|n| self.gids.contains(&n)))
            .unwrap_or(false)
    }
}
