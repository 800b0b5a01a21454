//! The live page at `/` and the JSON it polls: files, cache headers, the
//! API's exact answers, and the page itself in headless Chromium against a
//! daemon fed by a real MPI run, with a screenshot left for a person.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use protocol::{Desc, JobTag, Request, Role, Sample, Scale, Value};
use serde_json::json;

use crate::util::{
    attribute, first_column, http_get, http_raw, identity, mpi_test, target_file, wait_for, Browser, Proxy, RawPeer,
    TempDir,
};

/// The bytes of a file of the page's folder, as committed.
fn page_file(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy-daemon/page").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The head of the response to `request`, whatever its body.
fn response_head(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read HTTP response");
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    String::from_utf8(raw[..end].to_vec()).expect("UTF-8 head")
}

/// `/api/values` parsed.
fn api_values(p: &Proxy) -> serde_json::Value {
    let r = http_get(p.port, "/api/values", None);
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("/api/values is not JSON: {e}: {}", r.body))
}

#[test]
fn page_files_are_embedded_and_revalidated_by_entity_tag() {
    let p = Proxy::start();
    let r = http_get(p.port, "/", None);
    assert_eq!((r.status, r.header("Content-Type")), (200, Some("text/html; charset=utf-8")));
    assert_eq!(r.body.as_bytes(), page_file("index.html"));
    assert!(r.body.contains("<a href=\"/metrics\">Metrics</a>"));
    assert_eq!(r.header("Cache-Control"), Some("no-cache"));
    assert!(r.header("Content-Security-Policy").is_some_and(|v| v.starts_with("default-src 'self'")));
    let etag = r.header("ETag").expect("an ETag").to_owned();
    // Revalidation: 304 without a body while the daemon is the same.
    let again = http_raw(p.port, &format!("GET / HTTP/1.0\r\nIf-None-Match: {etag}\r\n\r\n"));
    assert_eq!((again.status, again.body.as_str(), again.header("ETag")), (304, "", Some(etag.as_str())));
    let other = http_raw(p.port, "GET / HTTP/1.0\r\nIf-None-Match: \"something-else\"\r\n\r\n");
    assert_eq!(other.status, 200);
    // Every file the page loads comes from the daemon, byte for byte.
    for (path, file, kind) in [
        ("/page/page.js", "page.js", "text/javascript; charset=utf-8"),
        ("/page/page.css", "page.css", "text/css; charset=utf-8"),
        ("/page/uPlot.iife.min.js", "uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("/page/uPlot.min.css", "uplot/uPlot.min.css", "text/css; charset=utf-8"),
        ("/page/uPlot.LICENSE.txt", "uplot/LICENSE", "text/plain; charset=utf-8"),
    ] {
        let r = http_get(p.port, path, None);
        assert_eq!((r.status, r.header("Content-Type")), (200, Some(kind)), "{path}");
        assert_eq!(r.body.as_bytes(), page_file(file), "{path}");
        assert!(r.body.len() > 100, "{path}");
    }
    // Compressed for a browser that accepts it, under another tag.
    let head = response_head(p.port, "GET /page/uPlot.iife.min.js HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n");
    assert!(head.contains("\r\nContent-Encoding: gzip"), "{head}");
    assert!(head.contains("-gz\""), "{head}");
    let r = http_get(p.port, "/page/nothing.js", None);
    assert_eq!((r.status, r.body.as_str()), (404, "not found: try /metrics\n"));
}

#[test]
fn api_values_are_the_node_totals_by_function_and_syscall_and_change_nothing() {
    let p = Proxy::start();
    let mut c = RawPeer::connect(&p.socket, Role::Collector);
    c.send(&Request::Hello { identity: identity("page") });
    let descs = [
        Desc::counter("mpi_hits_total", &[("function", "MPI_Send")], "calls"),
        Desc::counter("mpi_size_total", &[("function", "MPI_Send")], "bytes"),
        Desc::counter("mpi_time_total", &[("function", "MPI_Send")], "seconds").with_scale(Scale::Nano),
        Desc::counter("mpi_hits_total", &[("function", "MPI_Barrier")], "calls"),
        Desc::counter("strace_hits_total", &[("scall", "read")], "calls"),
        Desc::counter("strace_errors_total", &[("scall", "read")], "errors"),
        Desc::counter("strace_size_total", &[("scall", "read")], "bytes"),
    ];
    for (i, d) in descs.into_iter().enumerate() {
        c.send(&Request::Register { id: i as u32, desc: d });
    }
    let values = [12, 4096, 2_500_000_001, 3, 7, 2, 65536];
    c.send(&Request::Update {
        samples: values.iter().enumerate().map(|(i, &v)| Sample { id: i as u32, value: Value::Int(v) }).collect(),
    });
    assert_eq!(p.wait_value("strace_size_total{scall=\"read\"}", 65536.0), 65536.0);
    let before = http_get(p.port, "/metrics", None);
    let r = http_get(p.port, "/api/values", None);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(
        v["mpi"],
        json!({"MPI_Barrier": {"hits": 3}, "MPI_Send": {"hits": 12, "size": 4096, "time": 2.500000001}})
    );
    assert_eq!(v["syscalls"], json!({"read": {"hits": 7, "size": 65536, "errors": 2}}));
    assert_eq!(v["collectors"], 1);
    // Every series of the node, the proxy's own included, as /metrics shows them.
    let samples = before.body.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(v["series"].as_u64(), Some(samples as u64), "{}", before.body);
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(v["node"], node.trim());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((v["time"].as_f64().unwrap() - now).abs() < 60.0, "{v}");
    // Asking changes nothing: no scrape counted, no value moved.
    for _ in 0..3 {
        api_values(&p);
    }
    let head = http_raw(p.port, "HEAD /api/values HTTP/1.0\r\n\r\n");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    http_get(p.port, "/metrics", None);
    // Two scrapes of /metrics, none of the API (the page of the second one
    // may be the first's, reused: ask the store itself).
    assert_eq!(p.value("tau_metric_proxy_scrapes_total{format=\"text\"}"), 2.0);
    let after = api_values(&p);
    assert_eq!((&after["mpi"], &after["syscalls"]), (&v["mpi"], &v["syscalls"]));
    let r = http_get(p.port, "/api/values?job=1", None);
    assert_eq!((r.status, r.body.as_str()), (404, "no such job on this node: 1\n"));
    let r = http_get(p.port, "/api/values?node=1", None);
    assert_eq!((r.status, r.body.as_str()), (400, "/api/values takes one parameter at most: job=ID\n"));
    let r = http_get(p.port, "/api/jobs", None);
    let jobs: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!((r.status, &jobs["jobs"]), (200, &json!([])));
}

#[test]
fn api_values_of_a_job_are_its_own_and_api_jobs_lists_the_jobs_with_their_mpi_time() {
    let p = Proxy::start();
    // Job "a": rank 0 and rank 1; job "b": rank 0; and a collector of no job.
    let send = |job: Option<(&str, u32)>, program: &str, values: [u64; 3]| {
        let mut c = RawPeer::connect(&p.socket, Role::Collector);
        let identity = identity(program);
        c.send(&match job {
            Some((id, rank)) => Request::JobHello { identity, job: JobTag { id: id.into(), rank: Some(rank) } },
            None => Request::Hello { identity },
        });
        let descs = [
            Desc::counter("mpi_hits_total", &[("function", "MPI_Send")], "calls"),
            Desc::counter("mpi_time_total", &[("function", "MPI_Send")], "seconds").with_scale(Scale::Nano),
            Desc::counter("strace_hits_total", &[("scall", "read")], "calls"),
        ];
        for (i, d) in descs.into_iter().enumerate() {
            c.send(&Request::Register { id: i as u32, desc: d });
        }
        c.send(&Request::Update {
            samples: values.iter().enumerate().map(|(i, &v)| Sample { id: i as u32, value: Value::Int(v) }).collect(),
        });
        c
    };
    let _a0 = send(Some(("a", 0)), "app", [1, 1_000_000_000, 10]);
    let _a1 = send(Some(("a", 1)), "app", [2, 500_000_000, 20]);
    let _b0 = send(Some(("b", 0)), "other", [4, 250_000_000, 40]);
    let _none = send(None, "loose", [8, 125_000_000, 80]);
    assert_eq!(p.wait_value("mpi_hits_total{function=\"MPI_Send\"}", 15.0), 15.0);
    let of = |query: &str| {
        let r = http_get(p.port, &format!("/api/values{query}"), None);
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        (v["job"].clone(), v["mpi"].clone(), v["syscalls"].clone())
    };
    assert_eq!(
        of(""),
        (serde_json::Value::Null, json!({"MPI_Send": {"hits": 15, "time": 1.875}}), json!({"read": {"hits": 150}}))
    );
    assert_eq!(
        of("?job=a"),
        (json!("a"), json!({"MPI_Send": {"hits": 3, "time": 1.5}}), json!({"read": {"hits": 30}}))
    );
    assert_eq!(
        of("?job=b"),
        (json!("b"), json!({"MPI_Send": {"hits": 4, "time": 0.25}}), json!({"read": {"hits": 40}}))
    );
    let r = http_get(p.port, "/api/jobs", None);
    assert_eq!((r.status, r.header("Cache-Control")), (200, Some("no-store")));
    let mut v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    let jobs = v["jobs"].as_array_mut().expect("jobs");
    for j in jobs.iter_mut() {
        let start = j.as_object_mut().unwrap().remove("start").and_then(|s| s.as_f64());
        assert!(start.is_some_and(|s| s > 1e9), "a start time: {j}");
    }
    let mut ids: Vec<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    let a = jobs.iter().find(|j| j["id"] == "a").unwrap();
    assert_eq!(
        a,
        &json!({"id": "a", "ranks": [0, 1], "ranks_connected": 2, "collectors": 2, "live_collectors": 2,
                "end": null, "commands": ["app"], "mpi_time": 1.5})
    );
    let b = jobs.iter().find(|j| j["id"] == "b").unwrap();
    assert_eq!((&b["ranks"], &b["commands"], &b["mpi_time"]), (&json!([0]), &json!(["other"]), &json!(0.25)));
    let r = http_get(p.port, "/api/values?job=c", None);
    assert_eq!((r.status, r.body.as_str()), (404, "no such job on this node: c\n"));
    let r = http_get(p.port, "/api/values?job=a%20b", None);
    assert_eq!((r.status, r.body.as_str()), (404, "no such job on this node: a b\n"));
    let r = http_get(p.port, "/api/jobs?job=a", None);
    assert_eq!((r.status, r.body.as_str()), (400, "/api/jobs takes no parameters\n"));
}

/// The syscall names the page's table shows first: most time first (then
/// most calls, then by name), as many as the table has rows.
fn top_by_time(totals: &serde_json::Value, n: usize) -> Vec<String> {
    let mut all: Vec<(&String, f64, f64)> = totals
        .as_object()
        .expect("an object")
        .iter()
        .map(|(name, t)| (name, t["time"].as_f64().unwrap_or(0.0), t["hits"].as_f64().unwrap_or(0.0)))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.2.total_cmp(&a.2)).then(a.0.cmp(b.0)));
    all.into_iter().take(n).map(|(name, _, _)| name.clone()).collect()
}

/// The job of the MPI run the page is looked at with.
const JOB: &str = "page-job-7";

/// The MPI functions the ranks of `mpi_page` call while they run.
const RUNNING_FUNCTIONS: [&str; 7] =
    ["MPI_Allreduce", "MPI_Barrier", "MPI_Comm_rank", "MPI_Comm_size", "MPI_Init", "MPI_Recv", "MPI_Send"];

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Both charts of `dom` drew points.
fn assert_drawn(dom: &str) {
    for chart in ["mpi-chart", "syscalls-chart"] {
        let points: usize = attribute(dom, chart, "data-points").and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(points > 0, "{chart} drew no points:\n{dom}");
        println!("{chart}: {points} points drawn");
    }
}

mpi_test! {
    /// A real MPI run on 3 ranks (job page-job-7) and a traced command of
    /// no job feed the daemon; the page, in headless Chromium, lists the
    /// job, shows the node's functions and syscalls and draws its charts,
    /// and the job's link opens the job's view, with the job's calls only.
    /// The screenshots stay under target/page/.
    fn openmpi_live_page_in_a_browser_shows_a_real_mpi_run, mpich_live_page_in_a_browser_shows_a_real_mpi_run(mpi) {
        let p = Proxy::start();
        // Syscalls of a command that is over: the page's table must show
        // exactly the API's top ones.
        p.tool("tau_metric_proxy_run").args(["-s", "--", "cat", "/etc/hostname"]).run().assert_success();
        wait_for(Duration::from_secs(10), || (p.value("strace_hits_total{scall=\"execve\"}") > 0.0).then_some(()))
            .expect("the traced command's syscalls reach the daemon");
        let dir = TempDir::new("page-mpi");
        let stop = dir.join("stop");
        let program = mpi.program("mpi_page");
        let ranks = mpi.mpirun_in_job(3, &p.socket, JOB, &[program.as_os_str(), stop.as_os_str()]).spawn();
        let barrier = format!("tau_job_mpi_hits_total{{function=\"MPI_Barrier\",jobid=\"{JOB}\"}}");
        wait_for(Duration::from_secs(30), || (p.value(&barrier) > 10.0).then_some(()))
            .unwrap_or_else(|| panic!("the ranks' calls reach the daemon in job {JOB}; log:\n{}", p.log()));
        let url = format!("http://127.0.0.1:{}/", p.port);
        let browser = Browser::new();

        // The node's view.
        let dom = browser.dom(&url, Duration::from_secs(10));
        let syscalls_now = api_values(&p)["syscalls"].clone();
        assert_eq!(sorted(first_column(&dom, "mpi")), RUNNING_FUNCTIONS, "{dom}");
        assert_eq!(first_column(&dom, "syscalls"), top_by_time(&syscalls_now, 12), "{dom}");
        assert_eq!(first_column(&dom, "jobs"), [JOB], "{dom}");
        let link = format!("<a href=\"#job={JOB}\" class=\"job\">{JOB}</a>");
        assert!(dom.contains(&link), "no link {link}:\n{dom}");
        assert!(dom.contains("collectors connected"), "{dom}");
        assert_drawn(&dom);
        let png = target_file(&format!("page/live-page-{}.png", mpi.name));
        browser.screenshot(&url, Duration::from_secs(20), &png);
        println!("screenshot of the live page: {}", png.display());

        // The job's view, where the link leads: its MPI calls, no syscalls
        // (the traced command was of no job).
        let job_url = format!("{url}#job={JOB}");
        let dom = browser.dom(&job_url, Duration::from_secs(10));
        assert!(dom.contains(&format!("job <strong>{JOB}</strong>")), "{dom}");
        assert!(dom.contains(&format!("MPI functions<span class=\"of-view\"> of job {JOB}</span>")), "{dom}");
        assert_eq!(sorted(first_column(&dom, "mpi")), RUNNING_FUNCTIONS, "{dom}");
        assert_eq!(first_column(&dom, "syscalls"), ["no system calls counted yet"], "{dom}");
        assert!(dom.contains("<tr class=\"selected\">"), "the job is marked in the list:\n{dom}");
        let points: usize = attribute(&dom, "mpi-chart", "data-points").and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(points > 0, "the job's chart drew no points:\n{dom}");
        let png = target_file(&format!("page/live-page-job-{}.png", mpi.name));
        browser.screenshot(&job_url, Duration::from_secs(20), &png);
        println!("screenshot of the job's view: {}", png.display());

        std::fs::write(&stop, "").unwrap();
        let out = ranks.finish_within(Duration::from_secs(60));
        out.assert_success();
        assert!(out.stdout().starts_with("mpi_page: ") && out.stdout().ends_with(" laps on 3 ranks\n"), "{out}");
    }
}
