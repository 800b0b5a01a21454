//! Shared helpers for the integration tests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use protocol::{encode_frame, Preamble, Request, Role, PREAMBLE_LEN};

/// A binary of the workspace, from the target directory of this test run.
pub fn bin(name: &str) -> PathBuf {
    // This test binary lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first (`cargo xtask test` does)",
        path.display()
    );
    path
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tau-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` every 10 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A real `tau_metric_proxy` on a temporary socket and a free loopback port.
pub struct Proxy {
    pub socket: PathBuf,
    pub port: u16,
    pub dir: TempDir,
    child: Option<Child>,
    log: PathBuf,
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
        let mut p = Proxy { socket, port: 0, dir, child: Some(child), log };
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

    /// Every value, keyed by `family{labels}`, through `tau_metric_client -v -f json`.
    pub fn values(&self) -> BTreeMap<String, f64> {
        let out = self.client(&["-v", "-f", "json"]);
        assert!(out.status.success(), "tau_metric_client -v failed: {}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("client prints JSON");
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

    /// Runs `tau_metric_client -u SOCKET ARGS`.
    pub fn client(&self, args: &[&str]) -> Output {
        Command::new(bin("tau_metric_client")).arg("-u").arg(&self.socket).args(args).output().expect("run client")
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
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.0 request to 127.0.0.1:`port`.
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> HttpResponse {
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    http_raw(port, &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{accept}\r\n"))
}

/// Sends `request` as is and parses the response.
pub fn http_raw(port: u16, request: &str) -> HttpResponse {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read HTTP response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).expect("status");
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    HttpResponse { status, headers, body: body.to_owned() }
}

/// A collector speaking the protocol by hand, frame by frame.
pub struct RawPeer {
    pub stream: UnixStream,
}

impl RawPeer {
    /// Connects and exchanges preambles as `role`.
    pub fn connect(socket: &Path, role: Role) -> RawPeer {
        let mut stream = UnixStream::connect(socket).expect("connect to daemon");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(&Preamble::new(role).encode()).unwrap();
        let mut theirs = [0u8; PREAMBLE_LEN];
        stream.read_exact(&mut theirs).expect("daemon preamble");
        Preamble::decode(&theirs).expect("daemon speaks our version");
        RawPeer { stream }
    }

    pub fn send(&mut self, req: &Request) {
        let mut buf = Vec::new();
        encode_frame(req, &mut buf).unwrap();
        self.stream.write_all(&buf).unwrap();
    }

    /// Writes raw bytes; a write error (daemon closed) is ignored.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// True when the daemon has closed the connection (read gives EOF).
    pub fn closed_by_daemon(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// A test identity, unique per call.
pub fn identity(program: &str) -> protocol::Identity {
    static N: AtomicUsize = AtomicUsize::new(1);
    protocol::Identity {
        pid: std::process::id(),
        start_time: 0,
        nonce: N.fetch_add(1, Ordering::Relaxed) as u64,
        program: program.to_owned(),
    }
}

/// Output of a command as text, for assertions.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
