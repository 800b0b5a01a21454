//! A real Prometheus server on loopback, queried over its HTTP API.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

use super::{http_get, wait_for, TempDir};

/// A free loopback port (free when asked; Prometheus takes it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Prometheus server on loopback with its own temporary storage, killed on
/// drop.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

/// One series of an instant query: its labels and value.
pub type Series = (BTreeMap<String, String>, f64);

impl Prometheus {
    /// Starts Prometheus on a free port, trying another port if the one
    /// picked was taken in between by a parallel test.
    pub fn start(config: &Path) -> Prometheus {
        let mut dir = TempDir::new("prometheus");
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
                .spawn()
                .expect("prometheus is installed (cargo xtask test installs it)");
            let mut p = Prometheus { child, port, dir };
            let ready = wait_for(Duration::from_secs(30), || {
                if p.child.try_wait().ok()?.is_some() {
                    return Some(false);
                }
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
                std::io::Write::write_all(&mut s, b"GET /-/ready HTTP/1.0\r\n\r\n").ok()?;
                let mut head = String::new();
                std::io::Read::read_to_string(&mut s, &mut head).ok()?;
                (head.split(' ').nth(1) == Some("200")).then_some(true)
            });
            match ready {
                Some(true) => return p,
                Some(false) if p.log().contains("address already in use") => {
                    // Keep the directory for the next try; the child has exited.
                    let _ = p.child.wait();
                    dir = std::mem::replace(&mut p.dir, TempDir::new("unused"));
                }
                _ => panic!("prometheus did not start on port {port}; log:\n{}", p.log()),
            }
        }
        panic!("prometheus found no free port in three tries")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `/api/v1/query?query=Q`: the `data` object of the answer.
    pub fn api(&self, query: &str) -> Json {
        let path = format!("/api/v1/query?query={}", url_encode(query));
        let r = http_get(self.port, &path, None);
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        let mut json: Json = serde_json::from_str(&r.body).expect("Prometheus answers JSON");
        assert_eq!(json["status"], "success", "{query}: {}", r.body);
        json["data"].take()
    }

    /// An instant query: every series with its value.
    pub fn query(&self, query: &str) -> Vec<Series> {
        let data = self.api(query);
        assert_eq!(data["resultType"], "vector", "{query}");
        data["result"].as_array().unwrap().iter().map(|s| (labels(&s["metric"]), number(&s["value"][1]))).collect()
    }

    /// An instant query keyed by the value of one label.
    pub fn by(&self, query: &str, label: &str) -> BTreeMap<String, f64> {
        self.query(query).into_iter().map(|(l, v)| (l.get(label).cloned().unwrap_or_default(), v)).collect()
    }

    /// Polls `query` (keyed by `label`) until it equals `want`, for at most
    /// `limit`; returns what it last saw.
    pub fn wait_by(
        &self,
        query: &str,
        label: &str,
        want: &BTreeMap<String, f64>,
        limit: Duration,
    ) -> BTreeMap<String, f64> {
        let mut last = BTreeMap::new();
        wait_for(limit, || {
            last = self.by(query, label);
            (&last == want).then_some(())
        });
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn labels(metric: &Json) -> BTreeMap<String, String> {
    metric.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect()
}

/// Prometheus sends sample values as strings.
pub fn number(v: &Json) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a sample value: {v}"))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
