//! A real Prometheus server scraping real proxies: exact sums across nodes,
//! OpenMetrics negotiation, the shipped recording rules, a 100,000-series
//! scrape inside a 1 s timeout; the configuration generator and the rules
//! checked by promtool; the systemd units checked by systemd-analyze.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use client::{PushConfig, PushState, Pusher};
use protocol::{Desc, Scale};
use serde_json::Value as Json;

use crate::util::{bin, http_get, text, wait_for, Proxy, TempDir};

/// The shipped files, from the source tree.
fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").join("deploy").join(rel)
}

fn rules_file() -> PathBuf {
    deploy("prometheus/tau_metric_proxy.rules.yml")
}

/// `tau_metric_client ARGS` (no proxy needed for --prometheus-config).
fn client(args: &[&str]) -> Output {
    Command::new(bin("tau_metric_client")).args(args).output().expect("run tau_metric_client")
}

/// `promtool ARGS`: status code and everything it printed.
fn promtool(args: &[&str]) -> (Option<i32>, String) {
    let out =
        Command::new("promtool").args(args).output().expect("promtool is installed (cargo xtask test installs it)");
    (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

/// Writes `tau_metric_client --prometheus-config NODES --prometheus-rules
/// RULES` to `dir/prometheus.yml` and has promtool check it (and the rules).
fn generate_config(dir: &TempDir, nodes: &str) -> PathBuf {
    let config = dir.join("prometheus.yml");
    let rules = rules_file();
    let out = client(&[
        "--prometheus-config",
        nodes,
        "--prometheus-rules",
        rules.to_str().unwrap(),
        "-o",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (code, said) = promtool(&["check", "config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("SUCCESS: 24 rules found"), "{said}");
    config
}

/// A free loopback port (free when asked; Prometheus takes it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Prometheus server on loopback with its own temporary storage, killed on
/// drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: TempDir,
}

/// One series of an instant query: its labels and value.
type Series = (BTreeMap<String, String>, f64);

impl Prometheus {
    /// Starts Prometheus on a free port, trying another port if the one
    /// picked was taken in between by a parallel test.
    fn start(config: &Path) -> Prometheus {
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `/api/v1/query?query=Q`: the `data` object of the answer.
    fn api(&self, query: &str) -> Json {
        let path = format!("/api/v1/query?query={}", url_encode(query));
        let r = http_get(self.port, &path, None);
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        let mut json: Json = serde_json::from_str(&r.body).expect("Prometheus answers JSON");
        assert_eq!(json["status"], "success", "{query}: {}", r.body);
        json["data"].take()
    }

    /// An instant query: every series with its value.
    fn query(&self, query: &str) -> Vec<Series> {
        let data = self.api(query);
        assert_eq!(data["resultType"], "vector", "{query}");
        data["result"].as_array().unwrap().iter().map(|s| (labels(&s["metric"]), number(&s["value"][1]))).collect()
    }

    /// An instant query keyed by the value of one label.
    fn by(&self, query: &str, label: &str) -> BTreeMap<String, f64> {
        self.query(query).into_iter().map(|(l, v)| (l.get(label).cloned().unwrap_or_default(), v)).collect()
    }

    /// Polls `query` (keyed by `label`) until it equals `want`, for at most
    /// `limit`; returns what it last saw.
    fn wait_by(
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
fn number(v: &Json) -> f64 {
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

/// What the collectors send: node, rank on that node, family, label, label
/// value, first push, increment in the second push. Times are nanoseconds
/// (exported in seconds); they are binary fractions of a second, so that the
/// expected sums are exact in floating point too.
const SENT: &[(usize, usize, &str, &str, &str, u64, u64)] = &[
    (0, 0, "mpi_hits_total", "function", "MPI_Send", 3, 4),
    (0, 0, "mpi_size_total", "function", "MPI_Send", 3 * 4096, 4 * 4096),
    (0, 0, "mpi_time_total", "function", "MPI_Send", 1_500_000_000, 250_000_000),
    (0, 0, "mpi_hits_total", "function", "MPI_Allreduce", 10, 10),
    (0, 0, "mpi_time_total", "function", "MPI_Allreduce", 125_000_000, 125_000_000),
    (0, 1, "mpi_hits_total", "function", "MPI_Recv", 3, 4),
    (0, 1, "mpi_size_total", "function", "MPI_Recv", 3 * 4096, 4 * 4096),
    (0, 1, "mpi_time_total", "function", "MPI_Recv", 2_000_000_000, 500_000_000),
    (0, 1, "mpi_hits_total", "function", "MPI_Allreduce", 10, 10),
    (0, 1, "mpi_time_total", "function", "MPI_Allreduce", 250_000_000, 125_000_000),
    (0, 1, "strace_hits_total", "scall", "read", 100, 28),
    (0, 1, "strace_size_total", "scall", "read", 1 << 20, 1 << 19),
    (0, 1, "strace_time_total", "scall", "read", 62_500_000, 62_500_000),
    (1, 0, "mpi_hits_total", "function", "MPI_Allreduce", 10, 10),
    (1, 0, "mpi_time_total", "function", "MPI_Allreduce", 500_000_000, 3_000_000_000),
    (1, 0, "strace_hits_total", "scall", "read", 7, 1),
    (1, 0, "strace_size_total", "scall", "read", 70_000, 1_000),
    (1, 0, "strace_time_total", "scall", "read", 31_250_000, 31_250_000),
    (1, 0, "strace_hits_total", "scall", "write", 5, 5),
    (1, 0, "strace_size_total", "scall", "write", 512, 512),
    (1, 0, "strace_time_total", "scall", "write", 1_000_000_000, 1_000_000_000),
];

/// One process pushing its rows of [`SENT`] to its node's proxy.
struct Rank {
    pusher: Pusher,
    rows: Vec<(client::MetricId, u64, u64)>,
}

impl Rank {
    fn new(proxy: &Proxy, node: usize, rank: usize) -> Rank {
        let mut pusher = Pusher::new(PushConfig::new(proxy.socket.clone(), &format!("rank{rank}@node{node}")));
        let rows = SENT
            .iter()
            .filter(|r| (r.0, r.1) == (node, rank))
            .map(|&(_, _, family, label, value, first, more)| {
                let desc = Desc::counter(family, &[(label, value)], "test counter");
                let desc = if family.ends_with("_time_total") { desc.with_scale(Scale::Nano) } else { desc };
                (pusher.register(desc), first, more)
            })
            .collect();
        Rank { pusher, rows }
    }

    fn push(&mut self, second: bool) {
        for &(id, first, more) in &self.rows {
            self.pusher.add(id, if second { more } else { first });
        }
        assert_eq!(self.pusher.flush(), PushState::Sent);
    }
}

/// What Prometheus must report for `sum by (LABEL) (FAMILY)` after the first
/// push, or after both, computed from [`SENT`]; node-wide with `node`.
fn expected(family: &str, node: Option<usize>, both: bool) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    for &(n, _, f, _, value, first, more) in SENT {
        if f == family && node.unwrap_or(n) == n {
            *sums.entry(value.to_owned()).or_default() += first + if both { more } else { 0 };
        }
    }
    let scale = if family.ends_with("_time_total") { 1e9 } else { 1.0 };
    sums.into_iter().map(|(k, v)| (k, v as f64 / scale)).collect()
}

const FAMILIES: [(&str, &str); 6] = [
    ("mpi_hits_total", "function"),
    ("mpi_size_total", "function"),
    ("mpi_time_total", "function"),
    ("strace_hits_total", "scall"),
    ("strace_size_total", "scall"),
    ("strace_time_total", "scall"),
];

/// Two daemons stand in for two nodes; three collectors and the launcher
/// push to them; Prometheus, configured by the generator with the shipped
/// rules, must add them up exactly.
#[test]
fn prometheus_sums_two_nodes_exactly_over_openmetrics() {
    let proxies = [Proxy::start(), Proxy::start()];
    let mut ranks = [Rank::new(&proxies[0], 0, 0), Rank::new(&proxies[0], 0, 1), Rank::new(&proxies[1], 1, 0)];
    for r in &mut ranks {
        r.push(false);
    }
    let dir = TempDir::new("prom-e2e");
    let nodes: Vec<String> = proxies.iter().map(|p| format!("127.0.0.1:{}", p.port)).collect();
    let config = generate_config(&dir, &nodes.join(","));
    let prom = Prometheus::start(&config);
    let limit = Duration::from_secs(20);

    // First push scraped: the sums match it.
    let want = expected("mpi_hits_total", None, false);
    let got = prom.wait_by("sum by (function) (mpi_hits_total)", "function", &want, limit);
    assert_eq!(got, want, "first push; prometheus log:\n{}", prom.log());

    // Second push, and the launcher counting three runs (two on node 0).
    for r in &mut ranks {
        r.push(true);
    }
    for p in [&proxies[0], &proxies[0], &proxies[1]] {
        let out =
            Command::new(bin("tau_metric_proxy_run")).arg("-u").arg(&p.socket).args(["--", "true"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    for (family, label) in FAMILIES {
        let want = expected(family, None, true);
        let query = format!("sum by ({label}) ({family})");
        assert_eq!(prom.wait_by(&query, label, &want, limit), want, "{query}");
        // Node-wide: the same family on each node.
        for (n, node) in nodes.iter().enumerate() {
            let want = expected(family, Some(n), true);
            let query = format!("sum by ({label}) ({family}{{node=\"{node}\"}})");
            assert_eq!(prom.wait_by(&query, label, &want, limit), want, "{query}");
        }
    }
    let runs = BTreeMap::from([(String::new(), 3.0)]);
    let query = "sum(tau_metric_proxy_run_total{operation=\"exec\"})";
    assert_eq!(prom.wait_by(query, "", &runs, limit), runs, "{query}");
    // The seed's example query: one series per node, labelled with it.
    let reads = prom.by("strace_time_total{scall=\"read\"}", "node");
    assert_eq!(reads, BTreeMap::from([(nodes[0].clone(), 0.125), (nodes[1].clone(), 0.0625)]));

    // Both targets up, one job each, named after the node.
    let up = prom.query("up");
    assert_eq!(up.len(), 2, "{up:?}");
    for (labels, value) in &up {
        assert_eq!(*value, 1.0, "{labels:?}");
        let node = &labels["node"];
        assert!(nodes.contains(node), "{labels:?}");
        assert_eq!(labels["instance"], *node);
        assert_eq!(labels["job"], format!("tau_{node}"));
    }
    // Prometheus asked for OpenMetrics, and every scrape got it.
    for node in &nodes {
        let scrapes = prom.by(&format!("tau_metric_proxy_scrapes_total{{node=\"{node}\"}}"), "format");
        assert_eq!(scrapes.get("text"), Some(&0.0), "{node}: {scrapes:?}");
        assert!(scrapes.get("openmetrics").is_some_and(|&n| n >= 2.0), "{node}: {scrapes:?}");
    }

    // The recording rules: exact job-wide totals ...
    for (family, label) in FAMILIES {
        let want = expected(family, None, true);
        let record = format!("{label}:{family}:sum");
        assert_eq!(prom.wait_by(&record, label, &want, limit), want, "{record}");
    }
    // ... and rates, which the second push made positive: node-wide for both
    // nodes, job-wide and node-wide by function.
    let rate_positive = |record: &str, label: &str, keys: &[&str]| {
        let mut last = BTreeMap::new();
        let ok = wait_for(limit, || {
            last = prom.by(record, label);
            (last.len() == keys.len() && keys.iter().all(|k| last.get(*k).is_some_and(|&v| v > 0.0))).then_some(())
        });
        assert!(ok.is_some(), "{record}: {last:?}, want {keys:?} all above 0");
    };
    let node_keys: Vec<&str> = nodes.iter().map(String::as_str).collect();
    for m in ["hits", "size", "time"] {
        rate_positive(&format!("node:mpi_{m}:rate1m"), "node", &node_keys[..if m == "size" { 1 } else { 2 }]);
        rate_positive(&format!("node:strace_{m}:rate1m"), "node", &node_keys);
    }
    rate_positive("function:mpi_hits:rate1m", "function", &["MPI_Allreduce", "MPI_Recv", "MPI_Send"]);
    rate_positive("scall:strace_size:rate1m", "scall", &["read", "write"]);
    rate_positive(&format!("node_function:mpi_time:rate1m{{node=\"{}\"}}", nodes[1]), "function", &["MPI_Allreduce"]);
    rate_positive("node_scall:strace_hits:rate1m{scall=\"read\"}", "node", &node_keys);
}

/// A proxy holding 100,000 series is scraped successfully with the
/// generated configuration's 1 s scrape timeout.
#[test]
fn a_100000_series_scrape_fits_in_the_1s_timeout() {
    const SERIES: usize = 100_000;
    let proxy = Proxy::start();
    // Two collectors of 50,000 series each, under the per-collector limit.
    let mut pushers: Vec<Pusher> = (0..2)
        .map(|c| {
            let mut p = Pusher::new(PushConfig::new(proxy.socket.clone(), &format!("load{c}")));
            for i in 0..SERIES / 2 {
                let series = format!("{c}-{i}");
                let id = p.register(Desc::counter("load_hits_total", &[("series", &series)], "one of many"));
                p.add(id, i as u64 + 1);
            }
            p
        })
        .collect();
    for p in &mut pushers {
        assert_eq!(p.flush(), PushState::Sent);
    }
    let last = "load_hits_total{series=\"1-49999\"}";
    assert_eq!(proxy.wait_value(last, 50_000.0), 50_000.0);
    // The page alone, as Prometheus asks for it, for the record.
    let start = std::time::Instant::now();
    let page = http_get(proxy.port, "/metrics", Some("application/openmetrics-text;version=1.0.0"));
    assert_eq!(page.status, 200);
    assert_eq!(page.body.matches("\nload_hits_total{").count(), SERIES);
    println!("GET /metrics: {} bytes of OpenMetrics in {:?}", page.body.len(), start.elapsed());

    let dir = TempDir::new("prom-load");
    let config = generate_config(&dir, &format!("127.0.0.1:{}", proxy.port));
    assert!(std::fs::read_to_string(&config).unwrap().contains("    scrape_timeout: 1s\n"));
    let prom = Prometheus::start(&config);
    // Every scrape of the last 15 s read the full page, and at least three
    // did; none timed out (a timeout gives up 0 and no samples).
    let raw = |query: &str| -> Vec<f64> {
        let data = prom.api(query);
        data["result"][0]["values"].as_array().map(|a| a.iter().map(|v| number(&v[1])).collect()).unwrap_or_default()
    };
    let mut scraped = Vec::new();
    let three = wait_for(Duration::from_secs(30), || {
        scraped = raw("scrape_samples_scraped[15s]");
        (scraped.iter().filter(|&&n| n >= SERIES as f64).count() >= 3).then_some(())
    });
    assert!(three.is_some(), "samples per scrape: {scraped:?}; prometheus log:\n{}", prom.log());
    let ups = raw("up[15s]");
    let scraped = raw("scrape_samples_scraped[15s]");
    assert!(ups.len() >= 3 && ups.iter().all(|&u| u == 1.0), "up over the last 15 s: {ups:?}");
    assert!(scraped.iter().all(|&n| n >= SERIES as f64), "samples per scrape: {scraped:?}");
    // Prometheus's duration includes storing the samples (the first scrape
    // creates the 100,000 series); its timeout covers only the HTTP fetch.
    let took = raw("scrape_duration_seconds[15s]");
    println!("scrape_duration_seconds of {} samples: {took:?} (timeout 1 s)", scraped[0]);
}

/// Series for `promtool test rules`: family, label value, node, increase per
/// second (binary fractions, so every expected value is exact).
const RULE_INPUT: &[(&str, &str, &str, f64)] = &[
    ("mpi_hits_total", "MPI_Send", "n1", 2.0),
    ("mpi_hits_total", "MPI_Send", "n2", 3.0),
    ("mpi_hits_total", "MPI_Recv", "n1", 1.0),
    ("mpi_size_total", "MPI_Send", "n1", 2048.0),
    ("mpi_size_total", "MPI_Send", "n2", 1024.0),
    ("mpi_time_total", "MPI_Send", "n1", 0.5),
    ("mpi_time_total", "MPI_Send", "n2", 0.25),
    ("mpi_time_total", "MPI_Recv", "n1", 0.125),
    ("strace_hits_total", "read", "n1", 10.0),
    ("strace_hits_total", "read", "n2", 20.0),
    ("strace_hits_total", "write", "n2", 5.0),
    ("strace_size_total", "read", "n1", 4096.0),
    ("strace_size_total", "read", "n2", 8192.0),
    ("strace_size_total", "write", "n2", 512.0),
    ("strace_time_total", "read", "n1", 0.125),
    ("strace_time_total", "read", "n2", 0.25),
    ("strace_time_total", "write", "n2", 0.0625),
];

/// The `promtool test rules` file: every one of the 24 recorded series
/// evaluated after two minutes of linearly growing counters on two nodes,
/// the expectations computed from [`RULE_INPUT`].
fn rules_unit_test(rules: &Path) -> String {
    const SECONDS: f64 = 120.0;
    let mut y = format!("rule_files:\n  - '{}'\nevaluation_interval: 1s\ntests:\n", rules.display());
    y += "  - interval: 1s\n    input_series:\n";
    for &(family, value, node, slope) in RULE_INPUT {
        let label = if family.starts_with("mpi") { "function" } else { "scall" };
        y += &format!(
            "      - series: '{family}{{{label}=\"{value}\",node=\"{node}\",job=\"tau_{node}\",instance=\"{node}:1337\"}}'\n"
        );
        y += &format!("        values: '0+{slope}x{}'\n", SECONDS as u64 + 10);
    }
    y += "    promql_expr_test:\n";
    for (family, label) in FAMILIES {
        let m = family.trim_end_matches("_total");
        let rows: Vec<_> = RULE_INPUT.iter().filter(|r| r.0 == family).collect();
        // record name, the labels its series keep, and per-row contribution.
        let kinds: [(String, &[&str], f64); 4] = [
            (format!("{label}:{family}:sum"), &[label], SECONDS),
            (format!("{label}:{m}:rate1m"), &[label], 1.0),
            (format!("node_{label}:{m}:rate1m"), &["node", label], 1.0),
            (format!("node:{m}:rate1m"), &["node"], 1.0),
        ];
        for (record, keep, factor) in kinds {
            let mut sums: BTreeMap<String, f64> = BTreeMap::new();
            for &&(_, value, node, slope) in &rows {
                let key: Vec<String> = keep
                    .iter()
                    .map(|&k| if k == "node" { format!("node=\"{node}\"") } else { format!("{k}=\"{value}\"") })
                    .collect();
                *sums.entry(key.join(",")).or_default() += slope * factor;
            }
            y += &format!("      - expr: '{record}'\n        eval_time: {}s\n        exp_samples:\n", SECONDS as u64);
            for (labels, v) in sums {
                y += &format!("          - labels: '{record}{{{labels}}}'\n            value: {v}\n");
            }
        }
    }
    y
}

#[test]
fn the_shipped_rules_pass_promtool_and_compute_every_aggregate() {
    let rules = rules_file();
    let (code, said) = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert_eq!(
        (code, said.trim_end()),
        (Some(0), format!("Checking {}\n  SUCCESS: 24 rules found", rules.display()).as_str())
    );
    let dir = TempDir::new("prom-rules");
    let test = dir.join("rules_test.yml");
    std::fs::write(&test, rules_unit_test(&rules)).unwrap();
    let (code, said) = promtool(&["test", "rules", test.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{said}\n{}", std::fs::read_to_string(&test).unwrap());
    assert!(said.contains("  SUCCESS\n"), "{said}");
    // The unit test can fail: a wrong expectation is reported.
    let wrong = std::fs::read_to_string(&test).unwrap().replacen("value: 5\n", "value: 6\n", 1);
    std::fs::write(&test, wrong).unwrap();
    let (code, said) = promtool(&["test", "rules", test.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("function:mpi_hits:rate1m"), "{said}");
}

/// The forms of NODES, each giving a configuration promtool accepts.
#[test]
fn prometheus_config_from_comma_slurm_and_hostfile_lists() {
    let dir = TempDir::new("prom-config");
    let hostfile = dir.join("hosts");
    std::fs::write(
        &hostfile,
        "# compute nodes\nnode01 slots=4\nnode02:9000  # big memory\nnode01 slots=4\n\ngpu[1-2]\n",
    )
    .unwrap();
    let cases: [(String, &[&str]); 3] = [
        ("node1,node2".into(), &["node1", "node2"]),
        ("node[01-04,07],gpu1".into(), &["node01", "node02", "node03", "node04", "node07", "gpu1"]),
        (format!("@{}", hostfile.display()), &["node01", "node02:9000", "gpu1", "gpu2"]),
    ];
    for (nodes, want) in cases {
        let out = client(&["--prometheus-config", &nodes]);
        assert_eq!(out.status.code(), Some(0), "{nodes}: {}", text(&out.stderr));
        let yml = text(&out.stdout);
        let got: Vec<&str> =
            yml.lines().filter_map(|l| l.strip_prefix("          node: '")?.strip_suffix('\'')).collect();
        assert_eq!(got, want, "{nodes}:\n{yml}");
        for node in want {
            let target = if node.contains(':') { node.to_string() } else { format!("{node}:1337") };
            assert!(yml.contains(&format!("  - job_name: 'tau_{node}'\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n")), "{yml}");
        }
        // Without --prometheus-rules the rules are only a comment away.
        assert!(yml.contains("\n# rule_files:\n#   - '"), "{yml}");
        assert!(!yml.contains("\nrule_files:"), "{yml}");
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, &yml).unwrap();
        let (code, said) = promtool(&["check", "config", file.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{nodes}: {said}\n{yml}");
    }
    // `@-` reads the hostfile from standard input, as from `scontrol show hostnames`.
    let mut child = Command::new(bin("tau_metric_client"))
        .args(["--prometheus-config", "@-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"c1\nc2\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).matches("  - job_name: ").count(), 2);
    // With the rules: an absolute path, found by promtool from anywhere.
    let rules = rules_file();
    let out = client(&["--prometheus-config", "n1", "--prometheus-rules", rules.to_str().unwrap()]);
    assert!(text(&out.stdout).contains(&format!("\nrule_files:\n  - '{}'\n", rules.canonicalize().unwrap().display())));
}

#[test]
fn bad_node_lists_and_rules_files_are_one_line_errors() {
    let dir = TempDir::new("prom-bad");
    let missing = dir.join("nope");
    let at_missing = format!("@{}", missing.display());
    let cases = [
        (vec!["--prometheus-config", "node[01-04"], 1, "'[' without ']' in \"node[01-04\"".to_owned()),
        (vec!["--prometheus-config", "node[4-1]"], 1, "range \"4-1\" in [4-1] goes down".to_owned()),
        (vec!["--prometheus-config", "a,b:http"], 1, "invalid port \"http\" (1 to 65535)".to_owned()),
        (vec!["--prometheus-config", "a b"], 1, "invalid character ' ' in node name \"a b\"".to_owned()),
        (
            vec!["--prometheus-config", &at_missing],
            1,
            format!("cannot read hostfile {}: No such file or directory (os error 2)", missing.display()),
        ),
        (
            vec!["--prometheus-config", "a", "--prometheus-rules", missing.to_str().unwrap()],
            1,
            format!("cannot find rules file {}: No such file or directory (os error 2)", missing.display()),
        ),
    ];
    for (args, code, message) in cases {
        let out = client(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert_eq!(text(&out.stderr), format!("tau_metric_client: error: {message}\n"), "{args:?}");
        assert!(out.stdout.is_empty());
    }
    // One action at a time, and the rules only go with a configuration.
    for args in [vec!["--prometheus-config", "a", "-l"], vec!["--prometheus-rules", "x.yml"]] {
        let out = client(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).starts_with("tau_metric_client: error: "), "{args:?}");
    }
}

/// A shipped unit with the tools' install prefix replaced by this build's.
fn unit_here(rel: &str) -> String {
    let unit = std::fs::read_to_string(deploy(rel)).unwrap();
    let daemon = bin("tau_metric_proxy");
    unit.replace("/usr/local/bin/tau_metric_proxy", daemon.to_str().unwrap())
}

/// `systemd-analyze [--user] verify` on the unit: status and what it said.
/// It needs no running systemd; the man page is checked with the dist.
fn verify_unit(dir: &TempDir, rel: &str, user: bool) -> (Option<i32>, String) {
    let file = dir.join("tau_metric_proxy.service");
    std::fs::write(&file, unit_here(rel)).unwrap();
    let runtime = dir.join("xdg-runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let out = Command::new("systemd-analyze")
        .args(if user { &["--user"][..] } else { &[][..] })
        .args(["verify", "--man=no"])
        .arg(&file)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .expect("systemd-analyze (package systemd; cargo xtask test installs it)");
    (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let dir = TempDir::new("units");
    for (rel, user) in
        [("systemd/system/tau_metric_proxy.service", false), ("systemd/user/tau_metric_proxy.service", true)]
    {
        assert_eq!(verify_unit(&dir, rel, user), (Some(0), String::new()), "{rel}");
    }
    // The check is real: a misspelt key or a missing program is reported.
    let file = "systemd/system/tau_metric_proxy.service";
    let bad = dir.join("bad.service");
    std::fs::write(&bad, unit_here(file).replace("RestartSec=", "RestartSecs=")).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&bad).output().unwrap();
    assert!(text(&out.stderr).contains("Unknown key 'RestartSecs' in section [Service]"), "{}", text(&out.stderr));
    let missing = std::fs::read_to_string(deploy(file)).unwrap().replace("/usr/local/bin/", "/nonexistent/bin/");
    std::fs::write(&bad, missing).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&bad).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("/nonexistent/bin/tau_metric_proxy is not executable"), "{}", text(&out.stderr));
}

/// The unit's `ExecStart=` as words, its `${VAR}`s expanded from its
/// `Environment=` lines, `%U` as our uid and `%S` as `/var/lib`; paths under
/// `/run`, `/var/lib` and `/tmp` moved into `root`, and the HTTP port made
/// a free loopback one.
fn exec_start(rel: &str, root: &Path) -> Vec<String> {
    let unit = unit_here(rel);
    let mut line = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart=").to_owned();
    for env in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        let (k, v) = env.split_once('=').unwrap();
        line = line.replace(&format!("${{{k}}}"), v);
    }
    let uid = nix::unistd::geteuid().to_string();
    line = line.replace("%U", &uid).replace("%S", "/var/lib");
    for dir in ["/run/", "/var/lib/", "/tmp/"] {
        line = line.replace(&format!(" {dir}"), &format!(" {}{dir}", root.display()));
    }
    let mut words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    let port = words.iter().position(|w| w == "--port").expect("the unit names the port");
    assert_eq!(words[port + 1], "1337", "{rel}: Prometheus expects the default port");
    words[port + 1] = "0".into();
    words.extend(["--bind".into(), "127.0.0.1".into()]);
    words
}

/// Runs what a unit runs: the daemon comes up on the unit's socket with
/// the unit's access rule, and keeps its totals in the unit's state file.
fn run_unit_command(rel: &str, want_mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let root = TempDir::new("unit-run");
    let words = exec_start(rel, root.path());
    let arg = |flag: &str| PathBuf::from(&words[words.iter().position(|w| w == flag).unwrap() + 1]);
    let (socket, state) = (arg("--unix"), arg("--state"));
    // What RuntimeDirectory= and StateDirectory= (or /tmp) provide.
    for d in [&socket, &state] {
        std::fs::create_dir_all(d.parent().unwrap()).unwrap();
    }
    let log = root.join("daemon.log");
    let mut child =
        Command::new(&words[0]).args(&words[1..]).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let up = wait_for(Duration::from_secs(10), || read_log().contains("UNIX push gateway running on").then_some(()));
    assert!(up.is_some(), "{rel}: {words:?}\n{}", read_log());
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, want_mode, "{rel}");
    let mut p = Pusher::new(PushConfig::new(socket.clone(), "unit"));
    let id = p.register(Desc::counter("unit_runs_total", &[], "runs"));
    p.add(id, 5);
    assert_eq!(p.finish(), PushState::Sent);
    let got = wait_for(Duration::from_secs(10), || {
        let out = Command::new(bin("tau_metric_client"))
            .arg("-u")
            .arg(&socket)
            .args(["-g", "unit_runs_total", "-f", "json"])
            .output()
            .ok()?;
        text(&out.stdout).contains("\"value\": 5").then_some(())
    });
    assert!(got.is_some(), "{rel}: the count did not arrive");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success(), "{rel}: {}", read_log());
    assert!(state.is_file(), "{rel}: no state saved in {}; log:\n{}", state.display(), read_log());
}

#[test]
fn the_system_unit_runs_a_daemon_shared_by_the_users_group() {
    run_unit_command("systemd/system/tau_metric_proxy.service", 0o666);
}

#[test]
fn the_user_unit_runs_a_private_daemon_on_the_default_socket() {
    let words = exec_start("systemd/user/tau_metric_proxy.service", Path::new("/R"));
    let uid = nix::unistd::geteuid().as_raw();
    assert!(words.join(" ").contains(&format!(" --unix /R{} ", protocol::default_socket_path(uid))), "{words:?}");
    run_unit_command("systemd/user/tau_metric_proxy.service", 0o600);
}
