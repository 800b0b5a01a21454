//! Jobs in Prometheus: a job on two proxies ("nodes") summed by `jobid` in
//! a real Prometheus, and the jobs' recording rules under `promtool test
//! rules`.

use std::collections::BTreeMap;
use std::time::Duration;

use client::{PushConfig, PushState, Pusher};
use protocol::Desc;

use crate::util::{generate_config, promtool, rules_file, Prometheus, Proxy, TempDir};

/// What the collectors send: node, job (`None`: no job), function, calls.
const SENT: &[(usize, Option<&str>, &str, u64)] = &[
    (0, Some("4242"), "MPI_Send", 3),
    (0, Some("4242"), "MPI_Recv", 6),
    (1, Some("4242"), "MPI_Send", 4),
    (1, Some("4242"), "MPI_Recv", 5),
    (0, Some("77"), "MPI_Send", 10),
    (1, None, "MPI_Send", 100),
];

fn sums(key: impl Fn(&(usize, Option<&str>, &str, u64)) -> Option<String>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for row in SENT {
        if let Some(k) = key(row) {
            *out.entry(k).or_default() += row.3 as f64;
        }
    }
    out
}

#[test]
fn a_job_on_two_nodes_is_summed_by_jobid_in_prometheus() {
    let proxies = [Proxy::start(), Proxy::start()];
    // One collector per row, each of its job, kept connected.
    let _pushers: Vec<Pusher> = SENT
        .iter()
        .map(|&(node, job, function, calls)| {
            let mut cfg = PushConfig::new(proxies[node].socket.clone(), "rank");
            cfg.job = job.map(str::to_owned);
            let mut p = Pusher::new(cfg);
            let id = p.register(Desc::counter("mpi_hits_total", &[("function", function)], "calls"));
            p.add(id, calls);
            assert_eq!(p.flush(), PushState::Sent);
            p
        })
        .collect();
    let dir = TempDir::new("prom-jobs");
    let nodes: Vec<String> = proxies.iter().map(|p| format!("127.0.0.1:{}", p.port)).collect();
    let prom = Prometheus::start(&generate_config(&dir, &nodes.join(",")));
    let limit = Duration::from_secs(20);
    let want = sums(|r| r.1.map(str::to_owned));
    let query = "sum by (jobid) (tau_job_mpi_hits_total)";
    assert_eq!(prom.wait_by(query, "jobid", &want, limit), want, "{query}; log:\n{}", prom.log());
    // The node totals are the jobs' and the rest: nothing counted twice.
    let want = sums(|r| Some(r.2.to_owned()));
    let query = "sum by (function) (mpi_hits_total)";
    assert_eq!(prom.wait_by(query, "function", &want, limit), want, "{query}");
    // The shipped recording rule: the job, by function, over both nodes.
    let want = sums(|r| (r.1 == Some("4242")).then(|| r.2.to_owned()));
    let query = "jobid_function:tau_job_mpi_hits_total:sum{jobid=\"4242\"}";
    assert_eq!(prom.wait_by(query, "function", &want, limit), want, "{query}");
    let want = BTreeMap::from([("4242".to_owned(), 2.0), ("77".to_owned(), 1.0)]);
    let query = "count by (jobid) (tau_job_start_time_seconds)";
    assert_eq!(prom.wait_by(query, "jobid", &want, limit), want, "one start time per node: {query}");
}

/// Per-job input of `promtool test rules`: family, label value, job, node,
/// increase per second (binary fractions, so every expectation is exact).
const JOB_INPUT: &[(&str, &str, &str, &str, f64)] = &[
    ("tau_job_mpi_hits_total", "MPI_Send", "4242", "n1", 2.0),
    ("tau_job_mpi_hits_total", "MPI_Send", "4242", "n2", 3.0),
    ("tau_job_mpi_hits_total", "MPI_Send", "77", "n1", 1.0),
    ("tau_job_mpi_size_total", "MPI_Send", "4242", "n1", 1024.0),
    ("tau_job_mpi_size_total", "MPI_Recv", "4242", "n2", 512.0),
    ("tau_job_mpi_time_total", "MPI_Send", "4242", "n1", 0.5),
    ("tau_job_mpi_time_total", "MPI_Recv", "4242", "n2", 0.25),
    ("tau_job_mpi_time_total", "MPI_Send", "77", "n1", 0.125),
    ("tau_job_strace_hits_total", "read", "4242", "n1", 10.0),
    ("tau_job_strace_hits_total", "read", "4242", "n2", 20.0),
    ("tau_job_strace_size_total", "read", "77", "n1", 4096.0),
    ("tau_job_strace_time_total", "read", "4242", "n2", 0.0625),
    ("tau_job_strace_time_total", "write", "77", "n1", 0.125),
    ("tau_job_strace_errors_total", "openat", "4242", "n1", 4.0),
];

/// `tau_job_ranks`: job, node, ranks connected.
const RANKS: &[(&str, &str, f64)] = &[("4242", "n1", 2.0), ("4242", "n2", 2.0), ("77", "n1", 1.0)];

/// The jobs' 18 recording rules, each evaluated after two minutes, the
/// expectations computed from [`JOB_INPUT`] and [`RANKS`].
fn jobs_rules_test() -> String {
    const SECONDS: f64 = 120.0;
    let mut y = format!("rule_files:\n  - '{}'\nevaluation_interval: 1s\ntests:\n", rules_file().display());
    y += "  - interval: 1s\n    input_series:\n";
    let label_of = |family: &str| if family.contains("_mpi_") { "function" } else { "scall" };
    for &(family, value, job, node, slope) in JOB_INPUT {
        let label = label_of(family);
        y += &format!("      - series: '{family}{{{label}=\"{value}\",jobid=\"{job}\",node=\"{node}\"}}'\n");
        y += &format!("        values: '0+{slope}x{}'\n", SECONDS as u64 + 10);
    }
    for &(job, node, n) in RANKS {
        y += &format!("      - series: 'tau_job_ranks{{jobid=\"{job}\",node=\"{node}\"}}'\n");
        y += &format!("        values: '{n}x{}'\n", SECONDS as u64 + 10);
    }
    y += "    promql_expr_test:\n";
    let mut check = |record: &str, sums: BTreeMap<String, f64>| {
        y += &format!("      - expr: '{record}'\n        eval_time: {}s\n        exp_samples:\n", SECONDS as u64);
        for (labels, v) in sums {
            y += &format!("          - labels: '{record}{{{labels}}}'\n            value: {v}\n");
        }
    };
    let by = |family: &str, with_label: bool, factor: f64| {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for &(f, value, job, _, slope) in JOB_INPUT.iter().filter(|r| r.0 == family) {
            let key = if with_label {
                format!("jobid=\"{job}\",{}=\"{value}\"", label_of(f))
            } else {
                format!("jobid=\"{job}\"")
            };
            *sums.entry(key).or_default() += slope * factor;
        }
        sums
    };
    for family in [
        "tau_job_mpi_hits_total",
        "tau_job_mpi_size_total",
        "tau_job_mpi_time_total",
        "tau_job_strace_hits_total",
        "tau_job_strace_size_total",
        "tau_job_strace_time_total",
        "tau_job_strace_errors_total",
    ] {
        let m = family.trim_end_matches("_total");
        let label = label_of(family);
        check(&format!("jobid_{label}:{family}:sum"), by(family, true, SECONDS));
        check(&format!("jobid_{label}:{m}:rate1m"), by(family, true, 1.0));
    }
    check("jobid:tau_job_mpi_time:rate1m", by("tau_job_mpi_time_total", false, 1.0));
    check("jobid:tau_job_strace_time:rate1m", by("tau_job_strace_time_total", false, 1.0));
    let mut ranks: BTreeMap<String, f64> = BTreeMap::new();
    for &(job, _, n) in RANKS {
        *ranks.entry(format!("jobid=\"{job}\"")).or_default() += n;
    }
    let share = by("tau_job_mpi_time_total", false, 1.0).into_iter().map(|(k, t)| (k.clone(), t / ranks[&k])).collect();
    check("jobid:tau_job_ranks:sum", ranks);
    check("jobid:tau_job_mpi_time:share1m", share);
    y
}

#[test]
fn the_jobs_recording_rules_pass_promtool() {
    let dir = TempDir::new("prom-job-rules");
    let test = dir.join("jobs_test.yml");
    let text = jobs_rules_test();
    assert_eq!(text.matches("- expr:").count(), 18, "every rule of the jobs' group");
    std::fs::write(&test, &text).unwrap();
    let unit = promtool(&["test", "rules", test.to_str().unwrap()]).run();
    if unit.code() != Some(0) {
        unit.fail(format_args!("expected status 0 for:\n{text}"));
    }
    // 0.75 s/s of MPI time over 4 ranks: a wrong expectation fails.
    assert!(text.contains("value: 0.1875\n"), "{text}");
    std::fs::write(&test, text.replacen("value: 0.1875\n", "value: 0.2\n", 1)).unwrap();
    let unit = promtool(&["test", "rules", test.to_str().unwrap()]).run();
    unit.assert_exit(1);
    assert!(unit.combined().contains("jobid:tau_job_mpi_time:share1m"), "{unit}");
}
