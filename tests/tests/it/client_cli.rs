//! `tau_metric_client`, flag by flag, as the original documentation shows it.

use std::time::Duration;

use client::{PushConfig, Pusher};
use nix::sys::signal::Signal;
use protocol::Desc;

use crate::util::{cmd, tool, wait_for, Proxy, Run, Running, TempDir};

/// A proxy in which `tau_metric_proxy_run` ran `n` times.
fn proxy_with_runs(n: usize) -> Proxy {
    let p = Proxy::start();
    for _ in 0..n {
        p.tool("tau_metric_proxy_run").args(["--", "true"]).run().assert_success();
    }
    p
}

const RUN: &str = "tau_metric_proxy_run_total{operation=\"exec\"}";

/// The stdout of a command that exited with status 0.
fn ok(out: &Run) -> String {
    out.assert_exit(0).stdout()
}

#[test]
fn list_in_every_format() {
    let p = proxy_with_runs(1);
    let md = ok(&p.client(&["-l"]));
    assert!(md.starts_with(
        "╔═════════════════════════════════════════════════════════════════════╗\n\
         ║                 List of tau_metric_exporter Metrics                 ║\n\
         ╚═════════════════════════════════════════════════════════════════════╝\n\n"
    ));
    assert!(md.contains(
        " • tau_metric_proxy_run_total{operation=\"exec\"} (TAU_METRIC_COUNTER) :\n   \
         Number of launch with the tau_metric_proxy_run command\n"
    ));
    assert!(md.contains(" • tau_metric_proxy_collectors (TAU_METRIC_GAUGE) :\n"));

    let json: serde_json::Value = serde_json::from_str(&ok(&p.client(&["-l", "-f", "json"]))).unwrap();
    let run = json.as_array().unwrap().iter().find(|e| e["name"] == RUN).expect("run counter listed");
    assert_eq!(
        run,
        &serde_json::json!({"name": RUN, "doc": "Number of launch with the tau_metric_proxy_run command", "type": "TAU_METRIC_COUNTER"})
    );

    let txt = ok(&p.client(&["-l", "-f", "txt"]));
    assert!(txt.starts_with("# name doc type\n"));
    assert!(
        txt.contains(&format!("{RUN} \"Number of launch with the tau_metric_proxy_run command\" TAU_METRIC_COUNTER\n"))
    );

    let yaml = ok(&p.client(&["-l", "-f", "yaml"]));
    let parsed = python_yaml_to_json(&yaml);
    assert_eq!(parsed, json, "YAML and JSON listings differ");
}

/// Reads YAML with a real YAML parser (PyYAML) and returns it as JSON.
fn python_yaml_to_json(yaml: &str) -> serde_json::Value {
    let dir = TempDir::new("yaml");
    let f = dir.join("in.yaml");
    std::fs::write(&f, yaml).unwrap();
    // Debian's python3, whose PyYAML `cargo xtask test` installs.
    let out = cmd("/usr/bin/python3")
        .args(["-c", "import sys, json, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)"])
        .arg(&f)
        .hint("python3 with PyYAML (cargo xtask test installs python3-yaml)")
        .run();
    if !out.status().success() {
        out.fail(format_args!("YAML parser failed on:\n{yaml}"));
    }
    serde_json::from_slice(out.stdout_bytes()).unwrap()
}

#[test]
fn values_and_get_in_every_format() {
    let p = proxy_with_runs(9);
    let json: serde_json::Value = serde_json::from_str(&ok(&p.client(&["-v", "-f", "json"]))).unwrap();
    let run = json.as_array().unwrap().iter().find(|e| e["name"] == RUN).unwrap();
    assert_eq!(run["value"], serde_json::json!(9));
    let ts = run["ts"].as_f64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(ts > now - 600.0 && ts <= now + 1.0, "ts {ts} is not a recent Unix time");

    let got = ok(&p.client(&["-g", RUN, "-f", "json"]));
    let got: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got, serde_json::json!([{"name": RUN, "ts": run["ts"], "value": 9}]));

    // A comma separated list, in the order asked.
    let two = format!("tau_metric_proxy_scrapes_total{{format=\"text\"}},{RUN}");
    let txt = ok(&p.client(&["-g", &two, "-f", "txt"]));
    let lines: Vec<&str> = txt.lines().collect();
    assert_eq!(lines[0], "# name ts value");
    assert!(
        lines[1].starts_with("tau_metric_proxy_scrapes_total{format=\"text\"} ") && lines[1].ends_with(" 0"),
        "{txt}"
    );
    assert!(lines[2].starts_with(&format!("{RUN} ")) && lines[2].ends_with(" 9"), "{txt}");
    assert_eq!(lines.len(), 3);

    let yaml = python_yaml_to_json(&ok(&p.client(&["-g", RUN, "-f", "yaml"])));
    assert_eq!(yaml, got);

    let md = ok(&p.client(&["-g", RUN]));
    assert!(md.contains(&format!(" • {RUN} = 9\n   last change at ")), "{md}");

    // -o writes the same to a file.
    let dir = TempDir::new("out");
    let file = dir.join("v.json");
    assert_eq!(ok(&p.client(&["-g", RUN, "-f", "json", "-o", file.to_str().unwrap()])), "");
    let from_file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(from_file, got);
}

#[test]
fn errors_are_one_clear_line() {
    let p = proxy_with_runs(0);
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (vec!["-g", "nope_total,tau_metric_proxy_collectors,other"], 1, "tau_metric_client: error: no such metric in the proxy: nope_total, other".into()),
        (vec!["--bogus"], 2, "tau_metric_client: error: unexpected argument '--bogus' found (see tau_metric_client --help)".into()),
        (vec!["-l", "-f", "xml"], 2, "tau_metric_client: error: invalid value 'xml' for '--format <FORMAT>' [possible values: md, json, yaml, txt] (see tau_metric_client --help)".into()),
        (vec!["-t", "-F", "0"], 2, "tau_metric_client: error: invalid value '0' for '--freq <FREQ>': \"0\" is not a frequency in Hz (a number from 0.000001 to 1000000) (see tau_metric_client --help)".into()),
        (vec!["-t", "-F", "1e-20"], 2, "tau_metric_client: error: invalid value '1e-20' for '--freq <FREQ>': \"1e-20\" is not a frequency in Hz (a number from 0.000001 to 1000000) (see tau_metric_client --help)".into()),
        (vec![], 2, "tau_metric_client: error: nothing to do: give one of -l, -v, -g, -t, -T, --jobs, --prometheus-config or --report (see tau_metric_client --help)".into()),
        (vec!["-l", "-v"], 2, "tau_metric_client: error: the argument '--list' cannot be used with '--values' (see tau_metric_client --help)".into()),
    ];
    for (args, code, message) in cases {
        p.client(&args).assert_exit(code).assert_stderr(&format!("{message}\n")).assert_stdout("");
    }
    let dir = TempDir::new("missing");
    let missing = dir.join("no.sock");
    tool("tau_metric_client").arg("-u").arg(&missing).arg("-v").run().assert_exit(1).assert_stderr(&format!(
        "tau_metric_client: error: no tau_metric_proxy is running on {}: No such file or directory (os error 2)\n",
        missing.display()
    ));
}

/// Starts `tau_metric_client ARGS` writing to a file; returns it and the file.
fn tracker(p: &Proxy, dir: &TempDir, args: &[&str]) -> (Running, std::path::PathBuf) {
    let file = dir.join("track.json");
    let child = p.tool("tau_metric_client").args(args).arg("-o").arg(&file).spawn();
    (child, file)
}

/// Ctrl+C: SIGINT, then what the tracker did.
fn interrupt(child: Running) -> Run {
    child.signal(Signal::SIGINT);
    child.wait()
}

#[test]
fn tracking_writes_valid_json_of_changes_at_1khz() {
    let p = proxy_with_runs(0);
    let dir = TempDir::new("track");
    let (child, file) = tracker(&p, &dir, &["-T", "hot_total,never_total", "-F", "1000"]);
    // Wait until the tracker has started writing.
    wait_for(Duration::from_secs(10), || std::fs::read_to_string(&file).ok().filter(|s| s.starts_with('[')));
    let mut pusher = Pusher::new(PushConfig::new(p.socket.clone(), "hot"));
    let hot = pusher.register(Desc::counter("hot_total", &[], "Hot counter"));
    let cold = pusher.register(Desc::counter("cold_total", &[], "Not tracked"));
    for _ in 0..200 {
        pusher.add(hot, 3);
        pusher.add(cold, 1);
        pusher.flush();
        std::thread::sleep(Duration::from_millis(2));
    }
    pusher.finish();
    p.wait_value("hot_total", 600.0);
    std::thread::sleep(Duration::from_millis(50));
    interrupt(child)
        .assert_exit(0)
        .assert_stdout(&format!("Logging in {} interrupt with CTRL + C when done...\n", file.display()));
    let log: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).expect("valid JSON");
    let snapshots = log.as_array().unwrap();
    let mut last = 0;
    for snap in snapshots {
        let snap = snap.as_array().unwrap();
        assert_eq!(snap.len(), 1, "only the tracked series, only when it changed: {snap:?}");
        assert_eq!(snap[0]["name"], "hot_total");
        let v = snap[0]["value"].as_u64().unwrap();
        assert!(v > last && v % 3 == 0, "values only grow, by whole pushes: {last} then {v}");
        last = v;
    }
    assert_eq!(last, 600);
    println!("tracking at 1 kHz recorded {} snapshots of 200 pushes", snapshots.len());
}

#[test]
fn track_all_lists_non_null_series_then_only_changes() {
    let p = proxy_with_runs(2);
    let dir = TempDir::new("trackall");
    let (child, file) = tracker(&p, &dir, &["-t", "-F", "50"]);
    let started = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&file).ok().filter(|s| s.contains("tau_metric_proxy_run_total"))
    });
    assert!(started.is_some(), "the tracker wrote no first snapshot");
    p.tool("tau_metric_proxy_run").args(["--", "true"]).run().assert_success();
    // The series appears a second time once the tracker saw it change.
    let seen = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&file).ok().filter(|s| s.matches("tau_metric_proxy_run_total").count() >= 2)
    });
    assert!(seen.is_some(), "the tracker never wrote the change");
    interrupt(child).assert_exit(0);
    let log: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let snaps = log.as_array().unwrap();
    let first: Vec<&str> = snaps[0].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(first.contains(&RUN), "{first:?}");
    assert!(!first.contains(&"tau_metric_proxy_protocol_errors_total"), "null series are not tracked: {first:?}");
    let run_values: Vec<u64> = snaps
        .iter()
        .flat_map(|s| s.as_array().unwrap())
        .filter(|v| v["name"] == RUN)
        .map(|v| v["value"].as_u64().unwrap())
        .collect();
    assert_eq!(run_values, [2, 3]);
}

#[test]
fn tracking_with_nothing_changed_is_still_valid_json() {
    let p = proxy_with_runs(0);
    let dir = TempDir::new("empty");
    // One poll every 1000 s: Ctrl+C ends the wait at once.
    let (child, file) = tracker(&p, &dir, &["-T", "absent_total", "-F", "0.001"]);
    wait_for(Duration::from_secs(10), || std::fs::read_to_string(&file).ok().filter(|s| s.starts_with('[')));
    std::thread::sleep(Duration::from_millis(100));
    let interrupted = std::time::Instant::now();
    child.signal(Signal::SIGINT);
    child.finish_within(Duration::from_secs(10)).assert_exit(0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "[\n]\n");
    println!("tracking at 0.001 Hz: Ctrl+C ended it after {:.0} ms", interrupted.elapsed().as_secs_f64() * 1e3);
}

#[test]
fn the_frequency_belongs_to_tracking() {
    let p = proxy_with_runs(0);
    p.client(&["-l", "-F", "10"]).assert_exit(2).assert_stderr(
        "tau_metric_client: error: the following required arguments were not provided: <--track|--track-list <TRACK_LIST>> (see tau_metric_client --help)\n",
    );
}
