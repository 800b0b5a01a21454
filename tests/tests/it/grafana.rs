//! The shipped Grafana dashboard: its structure, and every query of it (the
//! panels' and the variables') run against a real Prometheus scraping a
//! proxy fed by a real MPI job and a traced command of the same job.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value as Json;

use crate::util::{deploy, generate_config, tool, wait_for, Mpi, Prometheus, Proxy, TempDir, OPENMPI};

/// The job the test runs.
const JOB: &str = "grafana-4242";

fn dashboard() -> Json {
    let path = deploy("grafana/tau_metric_proxy.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel that is not a row.
fn panels(d: &Json) -> Vec<&Json> {
    d["panels"].as_array().expect("panels").iter().filter(|p| p["type"] != "row").collect()
}

/// The text of a JSON string field, "" if it is none.
fn text<'a>(v: &'a Json, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

#[test]
fn the_dashboard_has_its_variables_panels_and_a_grid_without_overlaps() {
    let d = dashboard();
    assert_eq!((text(&d, "title"), text(&d, "uid")), ("tau_metric_proxy", "tau-metric-proxy"));
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "a schema Grafana 9 and later read");
    let vars = d["templating"]["list"].as_array().expect("variables");
    let names: Vec<&str> = vars.iter().map(|v| text(v, "name")).collect();
    assert_eq!(names, ["datasource", "node", "jobid"]);
    assert_eq!((text(&vars[0], "type"), text(&vars[0], "query")), ("datasource", "prometheus"));
    for v in &vars[1..] {
        assert_eq!(text(v, "type"), "query", "{v}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{v}");
        assert_eq!((&v["includeAll"], &v["multi"], text(v, "allValue")), (&Json::Bool(true), &Json::Bool(true), ".+"));
        assert_eq!(text(v, "definition"), text(&v["query"], "query"), "{v}");
    }
    assert!(text(&vars[2], "definition").contains("node=~\"$node\""), "jobs of the selected nodes");
    let all = panels(&d);
    let titles: BTreeSet<&str> = all.iter().map(|p| text(p, "title")).collect();
    for want in [
        "Jobs on the selected nodes",
        "MPI time share per job",
        "Top MPI functions by time",
        "MPI bytes per second",
        "Top syscalls by time",
        "Syscall bytes per second",
        "Collectors connected",
        "Refusals per second",
        "Scrape duration",
        "Proxies up",
    ] {
        assert!(titles.contains(want), "no panel {want:?} in {titles:?}");
    }
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let title = text(p, "title");
        assert!(ids.insert(p["id"].as_u64().expect("a panel id")), "id of {title} repeated");
        let g = &p["gridPos"];
        let [x, y, w, h] =
            ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap_or_else(|| panic!("{title}: gridPos.{k}")));
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{title} overlaps another panel at ({cx}, {cy})");
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        assert!(!text(p, "description").is_empty(), "{title} has no description");
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}");
        let refs: BTreeSet<&str> = targets.iter().map(|t| text(t, "refId")).collect();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds repeated");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            assert!(text(t, "expr").contains("node=~\"$node\""), "{title}: every query follows the node selector");
        }
    }
    // Job panels follow the job selector.
    for title in ["MPI time share per job", "Top MPI functions by time", "Top syscalls by time", "MPI bytes per second"]
    {
        let p = all.iter().find(|p| text(p, "title") == title).unwrap();
        assert!(
            p["targets"].as_array().unwrap().iter().all(|t| text(t, "expr").contains("jobid=~\"$jobid\"")),
            "{title}"
        );
    }
}

/// `expr` as Grafana sends it with one node and one job selected: regex
/// values escaped, and a rate interval of a few scrapes.
fn substitute(expr: &str, node: &str) -> String {
    expr.replace("$node", &node.replace('.', "\\\\.")).replace("$jobid", JOB).replace("$__rate_interval", "15s")
}

/// `label_values(SELECTOR, LABEL)`, the variables' query form, as PromQL.
fn label_values(query: &str) -> (String, String) {
    let inner = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).expect("label_values(...)");
    let (selector, label) = inner.rsplit_once(',').expect("label_values(SELECTOR, LABEL)");
    let label = label.trim().to_owned();
    (format!("group by ({label}) ({})", selector.trim()), label)
}

/// The job's ranks under Open MPI, and a traced command of the same job.
fn run_job(mpi: Mpi, p: &Proxy, stop: &std::path::Path) -> crate::util::Running {
    tool("tau_metric_proxy_run")
        .arg("-u")
        .arg(&p.socket)
        .args(["-j", JOB, "-s", "--", "cat", "/etc/hostname"])
        .run()
        .assert_success();
    let program = mpi.program("mpi_page");
    mpi.mpirun_in_job(2, &p.socket, JOB, &[program.as_os_str(), stop.as_os_str()]).spawn()
}

#[test]
fn every_query_of_the_dashboard_returns_series_for_a_job_that_ran() {
    let _serial = crate::util::serial();
    let mpi = OPENMPI;
    mpi.shim();
    let p = Proxy::start();
    let dir = TempDir::new("grafana");
    let stop = dir.join("stop");
    let ranks = run_job(mpi, &p, &stop);
    let barrier = format!("tau_job_mpi_hits_total{{function=\"MPI_Barrier\",jobid=\"{JOB}\"}}");
    wait_for(Duration::from_secs(30), || (p.value(&barrier) > 0.0).then_some(()))
        .unwrap_or_else(|| panic!("the job's MPI calls reach the daemon; log:\n{}", p.log()));
    let node = format!("127.0.0.1:{}", p.port);
    let prom = Prometheus::start(&generate_config(&dir, &node));
    let d = dashboard();
    // The variables list this node and this job.
    for v in &d["templating"]["list"].as_array().unwrap()[1..] {
        let (query, label) = label_values(&substitute(text(v, "definition"), &node));
        let want = if label == "node" { node.as_str() } else { JOB };
        let got = wait_for(Duration::from_secs(30), || {
            let values: BTreeSet<String> =
                prom.query(&query).into_iter().filter_map(|(l, _)| l.get(&label).cloned()).collect();
            values.contains(want).then_some(values)
        });
        assert!(got.is_some(), "{query}: no {want}; Prometheus log:\n{}", prom.log());
    }
    // Every panel's query is accepted and has series, of this job where it names one.
    for panel in panels(&d) {
        for t in panel["targets"].as_array().unwrap() {
            let query = substitute(text(t, "expr"), &node);
            let series = wait_for(Duration::from_secs(30), || Some(prom.query(&query)).filter(|s| !s.is_empty()))
                .unwrap_or_else(|| panic!("{}: `{query}` returned no series", text(panel, "title")));
            for (labels, value) in &series {
                assert!(labels.get("jobid").is_none_or(|j| j == JOB), "{query}: {labels:?}");
                assert!(labels.get("node").is_none_or(|n| n == &node), "{query}: {labels:?}");
                assert!(value.is_finite() && *value >= 0.0, "{query}: {labels:?} {value}");
            }
            println!("{}: `{query}`: {} series", text(panel, "title"), series.len());
        }
    }
    std::fs::write(&stop, "").unwrap();
    ranks.finish_within(Duration::from_secs(60)).assert_success();
}
