//! What an operator installs besides the binaries: the recording rules and
//! the configuration `tau_metric_client --prometheus-config` generates,
//! checked by promtool; the systemd units, checked by systemd-analyze and
//! by running the command they run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use client::{PushConfig, PushState, Pusher};
use protocol::Desc;

use crate::util::{bin, cmd, deploy, promtool, rules_file, tool, wait_for, Run, TempDir, TestCommand, FAMILIES};

/// `tau_metric_client ARGS` (no proxy needed for --prometheus-config).
fn client(args: &[&str]) -> Run {
    tool("tau_metric_client").args(args).run()
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
    ("strace_errors_total", "read", "n1", 1.0),
    ("strace_errors_total", "read", "n2", 0.5),
    ("strace_errors_total", "openat", "n2", 4.0),
];

/// The `promtool test rules` file: every one of the 28 recorded series of
/// the node families (the jobs' 18 are tested in `job_prom`)
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
    let check = promtool(&["check", "rules", rules.to_str().unwrap()]).run();
    check.assert_exit(0);
    let want = format!("Checking {}\n  SUCCESS: 46 rules found", rules.display());
    if check.combined().trim_end() != want {
        check.fail(format_args!("expected it to say {want:?}"));
    }
    let dir = TempDir::new("prom-rules");
    let test = dir.join("rules_test.yml");
    std::fs::write(&test, rules_unit_test(&rules)).unwrap();
    let unit = promtool(&["test", "rules", test.to_str().unwrap()]).run();
    if unit.code() != Some(0) {
        unit.fail(format_args!("expected status 0 for the test file:\n{}", std::fs::read_to_string(&test).unwrap()));
    }
    assert!(unit.combined().contains("  SUCCESS\n"), "{unit}");
    // The unit test can fail: a wrong expectation is reported.
    let wrong = std::fs::read_to_string(&test).unwrap().replacen("value: 5\n", "value: 6\n", 1);
    std::fs::write(&test, wrong).unwrap();
    let unit = promtool(&["test", "rules", test.to_str().unwrap()]).run();
    unit.assert_exit(1);
    assert!(unit.combined().contains("function:mpi_hits:rate1m"), "{unit}");
}

/// The `promtool test rules` file for the alerts: node n1's proxy stops
/// answering at 45 s, and at 120 s n1 refuses 4 series, n2 a connection and
/// 2 badly named registrations; n2 refused 7 series long ago, n1's
/// collector-limit refusals count as refused series, and the `up` of another
/// exporter or of a shard federated by the global server is none of the
/// alerts' business.
const ALERTS_UNIT_TEST: &str = r#"rule_files:
  - 'RULES'
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'up{job="tau_n1",instance="n1:1337",node="n1"}'
        values: '1 1 1 0 0 0 0 0 0 0 0'
      - series: 'up{job="tau_n2",instance="n2:1337",node="n2"}'
        values: '1x10'
      - series: 'up{job="node_exporter",instance="n1:9100"}'
        values: '0x10'
      - series: 'up{job="tau_federate",instance="shard0:9091",shard="0"}'
        values: '0x10'
      - series: 'tau_metric_proxy_refused_series_total{job="tau_n1",instance="n1:1337",node="n1"}'
        values: '0 0 0 0 0 0 0 0 4 4 4'
      - series: 'tau_metric_proxy_refused_series_total{job="tau_n2",instance="n2:1337",node="n2"}'
        values: '7x10'
      - series: 'tau_metric_proxy_refused_connections_total{job="tau_n2",instance="n2:1337",node="n2"}'
        values: '0 0 0 0 0 0 0 0 1 1 1'
      - series: 'tau_metric_proxy_refusals_total{job="tau_n2",instance="n2:1337",node="n2",reason="invalid_name"}'
        values: '0 0 0 0 0 0 0 0 2 2 2'
      - series: 'tau_metric_proxy_refusals_total{job="tau_n1",instance="n1:1337",node="n1",reason="collector_limit"}'
        values: '0 0 0 0 0 0 0 0 4 4 4'
    alert_rule_test:
      # Down for 30 s: pending, not yet firing.
      - eval_time: 75s
        alertname: TauMetricProxyDown
        exp_alerts: []
      - eval_time: 105s
        alertname: TauMetricProxyRefusingSeries
        exp_alerts: []
      - eval_time: 150s
        alertname: TauMetricProxyDown
        exp_alerts:
          - exp_labels: {severity: warning, job: tau_n1, instance: 'n1:1337', node: n1}
            exp_annotations:
              summary: 'tau_metric_proxy on n1 is down'
              description: 'Prometheus has not scraped n1:1337 for a minute: the node''s MPI and syscall counters are not collected.'
      - eval_time: 150s
        alertname: TauMetricProxyRefusingSeries
        exp_alerts:
          - exp_labels: {severity: warning, job: tau_n1, instance: 'n1:1337', node: n1}
            exp_annotations:
              summary: 'tau_metric_proxy on n1 refuses series'
              description: '4 series registrations refused in 5 minutes: a series limit was reached (see --max-series-per-collector and --max-series of tau_metric_proxy).'
      - eval_time: 150s
        alertname: TauMetricProxyRefusingConnections
        exp_alerts:
          - exp_labels: {severity: warning, job: tau_n2, instance: 'n2:1337', node: n2}
            exp_annotations:
              summary: 'tau_metric_proxy on n2 refuses connections'
              description: '1 connections refused in 5 minutes: a user outside --allow-uid / --allow-group runs instrumented programs.'
      - eval_time: 150s
        alertname: TauMetricProxyRefusingCollectorData
        exp_alerts:
          - exp_labels: {severity: info, job: tau_n2, instance: 'n2:1337', node: n2, reason: invalid_name}
            exp_annotations:
              summary: 'tau_metric_proxy on n2 refuses collector data (invalid_name)'
              description: '2 registrations or samples refused in 5 minutes for reason invalid_name.'
  # Job 4242 runs one rank on each of n1 and n2, each 0.6 s of every second
  # in MPI: 60% from the start, firing after 10 minutes. Job 77 spends 20%,
  # job "unranked" has no known ranks (never an alert, not a division by 0).
  - interval: 1m
    input_series:
      - series: 'tau_job_mpi_time_total{job="tau_n1",instance="n1:1337",node="n1",jobid="4242"}'
        values: '0+36x30'
      - series: 'tau_job_mpi_time_total{job="tau_n2",instance="n2:1337",node="n2",jobid="4242"}'
        values: '0+36x30'
      - series: 'tau_job_ranks{job="tau_n1",instance="n1:1337",node="n1",jobid="4242"}'
        values: '1x30'
      - series: 'tau_job_ranks{job="tau_n2",instance="n2:1337",node="n2",jobid="4242"}'
        values: '1x30'
      - series: 'tau_job_mpi_time_total{job="tau_n1",instance="n1:1337",node="n1",jobid="77"}'
        values: '0+12x30'
      - series: 'tau_job_ranks{job="tau_n1",instance="n1:1337",node="n1",jobid="77"}'
        values: '1x30'
      - series: 'tau_job_mpi_time_total{job="tau_n2",instance="n2:1337",node="n2",jobid="unranked"}'
        values: '0+60x30'
      - series: 'tau_job_ranks{job="tau_n2",instance="n2:1337",node="n2",jobid="unranked"}'
        values: '0x30'
    alert_rule_test:
      # The 5-minute rate reaches 60% once it has 5 minutes of the job
      # (before, it extrapolates no further back than the counter's 0):
      # above the share for 7 minutes at 12m, pending, not yet firing.
      - eval_time: 12m
        alertname: TauJobMPITimeShareHigh
        exp_alerts: []
      - eval_time: 20m
        alertname: TauJobMPITimeShareHigh
        exp_alerts:
          - exp_labels: {severity: info, jobid: '4242'}
            exp_annotations:
              summary: 'Job 4242 spends 60% of its time in MPI'
              description: 'The ranks of job 4242 have spent more than 50% of their time inside MPI calls for 10 minutes (5-minute rate of tau_job_mpi_time_total over tau_job_ranks).'
"#;

#[test]
fn the_shipped_alerts_pass_promtool_and_fire_when_they_should() {
    let alerts = deploy("prometheus/tau_metric_proxy.alerts.yml");
    let check = promtool(&["check", "rules", alerts.to_str().unwrap()]).run();
    check.assert_exit(0);
    let want = format!("Checking {}\n  SUCCESS: 5 rules found", alerts.display());
    if check.combined().trim_end() != want {
        check.fail(format_args!("expected it to say {want:?}"));
    }
    let dir = TempDir::new("prom-alerts");
    let test = dir.join("alerts_test.yml");
    let text = ALERTS_UNIT_TEST.replace("RULES", alerts.to_str().unwrap());
    std::fs::write(&test, &text).unwrap();
    let unit = promtool(&["test", "rules", test.to_str().unwrap()]).run();
    if unit.code() != Some(0) {
        unit.fail(format_args!("expected status 0 for the test file:\n{text}"));
    }
    assert!(unit.combined().contains("  SUCCESS\n"), "{unit}");
    // The unit test can fail: a wrong count, a wrong severity.
    for (from, to, named) in [
        ("'4 series registrations", "'5 series registrations", "TauMetricProxyRefusingSeries"),
        ("{severity: info, job: tau_n2,", "{severity: warning, job: tau_n2,", "TauMetricProxyRefusingCollectorData"),
        ("'Job 4242 spends 60%", "'Job 4242 spends 61%", "TauJobMPITimeShareHigh"),
        ("values: '0+12x30'", "values: '0+36x30'", "TauJobMPITimeShareHigh"),
        ("      - eval_time: 12m\n", "      - eval_time: 16m\n", "TauJobMPITimeShareHigh"),
    ] {
        assert!(text.contains(from), "{from}");
        std::fs::write(&test, text.replacen(from, to, 1)).unwrap();
        let unit = promtool(&["test", "rules", test.to_str().unwrap()]).run();
        unit.assert_exit(1);
        assert!(unit.combined().contains(named), "{unit}");
    }
    // Down for 75 s, n1 is firing: "no alert yet" no longer holds.
    std::fs::write(&test, text.replacen("      - eval_time: 75s\n", "      - eval_time: 120s\n", 1)).unwrap();
    promtool(&["test", "rules", test.to_str().unwrap()]).run().assert_exit(1);
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
        let yml = client(&["--prometheus-config", &nodes]).assert_exit(0).stdout();
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
        let check = promtool(&["check", "config", file.to_str().unwrap()]).run();
        if check.code() != Some(0) {
            check.fail(format_args!("expected status 0 for the configuration of {nodes}:\n{yml}"));
        }
    }
    // `@-` reads the hostfile from standard input, as from `scontrol show hostnames`.
    let out = tool("tau_metric_client").args(["--prometheus-config", "@-"]).input("c1\nc2\n").run();
    out.assert_exit(0);
    assert_eq!(out.stdout().matches("  - job_name: ").count(), 2, "{out}");
    // With the rules: an absolute path, found by promtool from anywhere.
    let rules = rules_file();
    let out = client(&["--prometheus-config", "n1", "--prometheus-rules", rules.to_str().unwrap()]);
    let listed = format!("\nrule_files:\n  - '{}'\n", rules.canonicalize().unwrap().display());
    assert!(out.stdout().contains(&listed), "{out}");
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
        (
            vec!["--prometheus-config", "a", "--shards", "2"],
            1,
            "--shards writes several files: name their directory with -o DIR".to_owned(),
        ),
        (
            vec![
                "--prometheus-config",
                "a",
                "--shards",
                "3",
                "--shard-servers",
                "p1,p2",
                "-o",
                dir.path().to_str().unwrap(),
            ],
            1,
            "--shard-servers names 2 servers for 3 shards".to_owned(),
        ),
        (
            vec!["--prometheus-config", "a", "--shards", "0", "-o", "x"],
            2,
            "invalid value '0' for '--shards <N>': 0 is not in 1..=1024 (see tau_metric_client --help)".to_owned(),
        ),
    ];
    for (args, code, message) in cases {
        client(&args)
            .assert_exit(code)
            .assert_stderr(&format!("tau_metric_client: error: {message}\n"))
            .assert_stdout("");
    }
    // One action at a time, and the rules only go with a configuration.
    for args in [
        vec!["--prometheus-config", "a", "-l"],
        vec!["--prometheus-rules", "x.yml"],
        vec!["--shards", "2", "-o", "x"],
        vec!["--prometheus-config", "a", "--shard-servers", "p1", "-o", "x"],
    ] {
        let out = client(&args);
        out.assert_exit(2);
        assert!(out.stderr().starts_with("tau_metric_client: error: "), "{out}");
    }
}

/// A shipped unit with the tools' install prefix replaced by this build's.
fn unit_here(rel: &str) -> String {
    let unit = std::fs::read_to_string(deploy(rel)).unwrap();
    let daemon = bin("tau_metric_proxy");
    unit.replace("/usr/local/bin/tau_metric_proxy", daemon.to_str().unwrap())
}

/// `systemd-analyze [--user] verify` on the unit.
/// It needs no running systemd; the man page is checked with the dist.
fn verify_unit(dir: &TempDir, rel: &str, user: bool) -> Run {
    let file = dir.join("tau_metric_proxy.service");
    std::fs::write(&file, unit_here(rel)).unwrap();
    let runtime = dir.join("xdg-runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    systemd_analyze()
        .args(if user { &["--user"][..] } else { &[][..] })
        .args(["verify", "--man=no"])
        .arg(&file)
        .env("XDG_RUNTIME_DIR", &runtime)
        .run()
}

fn systemd_analyze() -> TestCommand {
    cmd("systemd-analyze").hint("systemd-analyze (package systemd; cargo xtask test installs it)")
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let dir = TempDir::new("units");
    for (rel, user) in
        [("systemd/system/tau_metric_proxy.service", false), ("systemd/user/tau_metric_proxy.service", true)]
    {
        verify_unit(&dir, rel, user).assert_exit(0).assert_stdout("").assert_stderr("");
    }
    // The check is real: a misspelt key or a missing program is reported.
    let file = "systemd/system/tau_metric_proxy.service";
    let bad = dir.join("bad.service");
    std::fs::write(&bad, unit_here(file).replace("RestartSec=", "RestartSecs=")).unwrap();
    let out = systemd_analyze().args(["verify", "--man=no"]).arg(&bad).run();
    assert!(out.stderr().contains("Unknown key 'RestartSecs' in section [Service]"), "{out}");
    let missing = std::fs::read_to_string(deploy(file)).unwrap().replace("/usr/local/bin/", "/nonexistent/bin/");
    std::fs::write(&bad, missing).unwrap();
    let out = systemd_analyze().args(["verify", "--man=no"]).arg(&bad).run();
    out.assert_failure();
    assert!(out.stderr().contains("/nonexistent/bin/tau_metric_proxy is not executable"), "{out}");
}

/// The unit's `ExecStart=` as words, its `${VAR}`s expanded from its
/// `Environment=` lines, `%U` as our uid, `%S` as `/var/lib` and `%h` as
/// `/home/user`; paths under `/run`, `/var/lib`, `/tmp` and `/home` moved into `root`, and the HTTP port made
/// a free loopback one.
fn exec_start(rel: &str, root: &Path) -> Vec<String> {
    let unit = unit_here(rel);
    let mut line = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart=").to_owned();
    for env in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        let (k, v) = env.split_once('=').unwrap();
        line = line.replace(&format!("${{{k}}}"), v);
    }
    let uid = nix::unistd::geteuid().to_string();
    line = line.replace("%U", &uid).replace("%S", "/var/lib").replace("%h", "/home/user");
    for dir in ["/run/", "/var/lib/", "/tmp/", "/home/"] {
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
    // The daemon makes the unit's profile directory.
    let profiles = arg("--profile-dir");
    assert!(profiles.is_dir(), "{rel}: no {}", profiles.display());
    let mut p = Pusher::new(PushConfig::new(socket.clone(), "unit"));
    let id = p.register(Desc::counter("unit_runs_total", &[], "runs"));
    p.add(id, 5);
    assert_eq!(p.finish(), PushState::Sent);
    let got = wait_for(Duration::from_secs(10), || {
        let out = tool("tau_metric_client").arg("-u").arg(&socket).args(["-g", "unit_runs_total", "-f", "json"]).run();
        out.stdout().contains("\"value\": 5").then_some(())
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
