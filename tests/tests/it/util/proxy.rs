//! A real `tau_metric_proxy` on a temporary socket and a free loopback
//! port, queried through the real `tau_metric_client`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::command::{attach_daemon_log, detach_daemon_log};
use super::http::http_get;
use super::{bin, tool, wait_for, Run, TempDir, TestCommand};

/// A running daemon, SIGKILLed on drop. While it lives, its log is part of
/// the report of every failed command check of the test that started it.
pub struct Proxy {
    pub socket: PathBuf,
    pub port: u16,
    pub dir: TempDir,
    child: Option<Child>,
    log: PathBuf,
    log_key: u64,
}

impl Proxy {
    /// Starts a daemon and waits until both servers are up.
    pub fn start() -> Proxy {
        Proxy::start_with(&[])
    }

    /// Starts a daemon with extra flags.
    pub fn start_with(extra: &[&str]) -> Proxy {
        let dir = TempDir::new("proxy");
        let socket = dir.join("proxy.sock");
        Proxy::start_at(dir, socket, extra)
    }

    /// Starts a daemon on `dir/proxy.sock` with `--state STATE` and `extra`.
    pub fn with_state(dir: TempDir, state: &Path, extra: &[&str]) -> Proxy {
        let socket = dir.join("proxy.sock");
        let mut args = vec!["--state", state.to_str().unwrap()];
        args.extend_from_slice(extra);
        Proxy::start_at(dir, socket, &args)
    }

    /// Starts a daemon on `socket` (in `dir`, which it keeps alive).
    pub fn start_at(dir: TempDir, socket: PathBuf, extra: &[&str]) -> Proxy {
        let log = dir.join("daemon.log");
        let child = Command::new(bin("tau_metric_proxy"))
            .arg("-u")
            .arg(&socket)
            .args(["-p", "0", "--bind", "127.0.0.1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("daemon log"))
            .spawn()
            .expect("start tau_metric_proxy");
        let log_key = attach_daemon_log(&log);
        let mut p = Proxy { socket, port: 0, dir, child: Some(child), log, log_key };
        let port = wait_for(Duration::from_secs(10), || {
            let log = p.log();
            let port = log.lines().find_map(|l| l.split("now listening on 127.0.0.1:").nth(1))?.trim().parse().ok()?;
            log.contains("UNIX push gateway running on").then_some(port)
        });
        p.port = port.unwrap_or_else(|| panic!("daemon did not start; log:\n{}", p.log()));
        p
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("daemon running")
    }

    /// The workspace binary `name` with `-u SOCKET`.
    pub fn tool(&self, name: &str) -> TestCommand {
        tool(name).arg("-u").arg(&self.socket)
    }

    /// Runs `tau_metric_client -u SOCKET ARGS`.
    pub fn client(&self, args: &[&str]) -> Run {
        self.tool("tau_metric_client").args(args).run()
    }

    /// Every value, keyed by `family{labels}`, through `tau_metric_client -v -f json`.
    pub fn values(&self) -> BTreeMap<String, f64> {
        let out = self.client(&["-v", "-f", "json"]);
        out.assert_success();
        let json: serde_json::Value =
            serde_json::from_slice(out.stdout_bytes()).unwrap_or_else(|e| out.fail(format_args!("not JSON: {e}")));
        json.as_array()
            .expect("a JSON array")
            .iter()
            .map(|v| (v["name"].as_str().expect("name").to_owned(), v["value"].as_f64().unwrap_or(f64::NAN)))
            .collect()
    }

    /// One series' value, 0 if the series does not exist.
    pub fn value(&self, name: &str) -> f64 {
        self.values().get(name).copied().unwrap_or(0.0)
    }

    /// Waits until `name` equals `want`; returns the last value seen.
    pub fn wait_value(&self, name: &str, want: f64) -> f64 {
        let mut last = 0.0;
        wait_for(Duration::from_secs(10), || {
            last = self.value(name);
            (last == want).then_some(())
        });
        last
    }

    /// The `/metrics` page as Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let r = http_get(self.port, "/metrics", None);
        assert_eq!(r.status, 200, "GET /metrics");
        r.body
    }

    /// Sends `sig` to the daemon and waits for it to exit.
    pub fn stop_with(&mut self, sig: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("signal daemon");
        child.wait().expect("wait daemon")
    }

    /// SIGKILLs the daemon (nothing is cleaned up).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a new daemon on the same socket, after a `kill`.
    pub fn restart(self) -> Proxy {
        let mut me = self;
        me.kill();
        let dir = std::mem::replace(&mut me.dir, TempDir::new("moved"));
        Proxy::start_at(dir, me.socket.clone(), &[])
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
        detach_daemon_log(self.log_key);
    }
}
