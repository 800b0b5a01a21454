//! Per-job series: two jobs on one proxy kept apart exactly while node
//! totals stay their sum (real `mpirun`, both MPIs), a job's gauges, its
//! series leaving after `--job-retention`, `--max-jobs` and its evictions.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::util::{bin, mpi_test, wait_for, Mpi, Proxy, TestCommand};

/// `mpirun -np NP env SLURM_JOB_ID=JOB tau_metric_proxy_run -m -- job_env`:
/// the scheduler's variable reaches the ranks only, not `mpirun` itself
/// (Open MPI's `mpirun` would take it for a Slurm allocation).
fn job_run(mpi: Mpi, p: &Proxy, np: usize, job: &str) -> TestCommand {
    let prog = mpi.program("job_env");
    let var = format!("SLURM_JOB_ID={job}");
    let launcher = bin("tau_metric_proxy_run");
    let args = [
        "env".as_ref(),
        var.as_ref(),
        launcher.as_os_str(),
        "-u".as_ref(),
        p.socket.as_os_str(),
        "-m".as_ref(),
        "--".as_ref(),
        prog.as_os_str(),
    ];
    let mut cmd = mpi.mpirun(np, None, &args);
    for k in ["TAU_METRIC_PROXY_JOB", "SLURM_JOB_ID", "SLURM_STEP_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID"] {
        cmd = cmd.env_remove(k);
    }
    cmd
}

/// The series of `values` whose name starts with `prefix`.
fn starting(values: &BTreeMap<String, f64>, prefix: &str) -> BTreeMap<String, f64> {
    values.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), *v)).collect()
}

mpi_test! {
    /// Two jobs at once: 2 ranks of job 4242 and 3 of job 77, each rank
    /// calling `MPI_Barrier` once.
    fn openmpi_two_jobs_at_once_are_kept_apart, mpich_two_jobs_at_once_are_kept_apart(mpi) {
        let p = Proxy::start();
        let a = job_run(mpi, &p, 2, "4242").spawn();
        let b = job_run(mpi, &p, 3, "77").spawn();
        a.wait().assert_exit(0);
        b.wait().assert_exit(0);
        let barrier = "mpi_hits_total{function=\"MPI_Barrier\"}";
        assert_eq!(p.wait_value(barrier, 5.0), 5.0);
        let job = |id: &str| format!("tau_job_mpi_hits_total{{function=\"MPI_Barrier\",jobid=\"{id}\"}}");
        let v = p.values();
        assert_eq!((v.get(&job("4242")), v.get(&job("77"))), (Some(&2.0), Some(&3.0)), "{v:#?}");
        // Every per-job counter is the sum of its node series' parts: the
        // two jobs' twins of each node series add up to it.
        for (name, total) in starting(&v, "mpi_") {
            let (family, labels) = name.split_once('{').expect("labelled");
            let of = |id: &str| {
                let key = format!("tau_job_{family}{{{},jobid=\"{id}\"}}", labels.trim_end_matches('}'));
                v.get(&key).copied().unwrap_or_else(|| panic!("{key} missing: {v:#?}"))
            };
            let sum = of("4242") + of("77");
            assert!((sum - total).abs() <= 1e-9 * total.abs(), "{name}: {total} on the node, {sum} in the jobs");
        }
        // One launch per rank, per job too.
        assert_eq!(v.get("tau_metric_proxy_run_total{operation=\"exec\"}"), Some(&5.0));
        assert_eq!(v.get("tau_job_run_total{jobid=\"77\",operation=\"exec\"}"), Some(&3.0));
        // The jobs ended: no rank connected, an end time after the start.
        wait_for(Duration::from_secs(10), || {
            let v = p.values();
            v.contains_key("tau_job_end_time_seconds{jobid=\"77\"}").then_some(())
        });
        let v = p.values();
        for id in ["4242", "77"] {
            let start = v[&format!("tau_job_start_time_seconds{{jobid=\"{id}\"}}")];
            let end = v[&format!("tau_job_end_time_seconds{{jobid=\"{id}\"}}")];
            assert!(end >= start && start > 1.7e9, "job {id}: {start} .. {end}");
            assert_eq!(v[&format!("tau_job_ranks{{jobid=\"{id}\"}}")], 0.0);
        }
        assert_eq!(p.wait_value("tau_metric_proxy_jobs", 2.0), 2.0, "refreshed once a second");
        // `--jobs`: each job's ranks and commands, as the ranks ran them.
        let out = p.client(&["--jobs", "-f", "json"]);
        let jobs: serde_json::Value = serde_json::from_slice(out.assert_success().stdout_bytes()).unwrap();
        let mut got: Vec<(String, serde_json::Value, serde_json::Value)> = jobs
            .as_array()
            .unwrap()
            .iter()
            .map(|j| (j["id"].as_str().unwrap().to_owned(), j["ranks"].clone(), j["commands"].clone()))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let cmds = serde_json::json!(["tau_metric_proxy_run", format!("job_env_{}", mpi.name)]);
        assert_eq!(
            got,
            [
                ("4242".to_owned(), serde_json::json!([0, 1]), cmds.clone()),
                ("77".to_owned(), serde_json::json!([0, 1, 2]), cmds)
            ],
            "{out}"
        );
        let page = p.metrics_text();
        assert!(page.contains("# TYPE tau_job_mpi_hits_total counter\n"), "{page}");
        assert!(page.contains(&format!("{} 2\n", job("4242"))), "{page}");
    }
}

/// `tau_metric_proxy_run -j ID -- CMD` on the proxy, nothing else.
fn run_in_job(p: &Proxy, job: &str, cmd: &[&str]) {
    p.tool("tau_metric_proxy_run")
        .env_remove("TAU_METRIC_PROXY_JOB")
        .args(["-j", job, "--"])
        .args(cmd)
        .run()
        .assert_exit(0);
}

#[test]
fn a_running_job_counts_its_ranks_and_its_series_leave_after_the_retention() {
    let p = Proxy::start_with(&["--job-retention", "2", "-v"]);
    let ranks = "tau_job_ranks{jobid=\"r1\"}";
    // Two launchers of job r1 with ranks 0 and 1 stay connected while
    // their commands run.
    let sleepers: Vec<_> = (0..2)
        .map(|r| {
            p.tool("tau_metric_proxy_run")
                .env("OMPI_COMM_WORLD_RANK", r.to_string())
                .args(["-j", "r1", "--", "sleep", "3"])
                .spawn()
        })
        .collect();
    assert_eq!(p.wait_value(ranks, 2.0), 2.0, "{}", p.log());
    assert_eq!(p.value("tau_job_run_total{jobid=\"r1\",operation=\"exec\"}"), 2.0);
    assert!(!p.values().contains_key("tau_job_end_time_seconds{jobid=\"r1\"}"), "running");
    for s in sleepers {
        s.wait().assert_exit(0);
    }
    wait_for(Duration::from_secs(10), || {
        p.values().contains_key("tau_job_end_time_seconds{jobid=\"r1\"}").then_some(())
    });
    assert_eq!(p.value(ranks), 0.0);
    // The daemon took the job's record (what its profile is made of).
    wait_for(Duration::from_secs(10), || p.log().contains("job r1 finished: 2 collectors").then_some(()))
        .unwrap_or_else(|| panic!("no record taken:\n{}", p.log()));
    // Retention 2 s (and a housekeeping round of 1 s): the job's series
    // leave the client and the page; the node total stays.
    let gone = wait_for(Duration::from_secs(10), || {
        let v = p.values();
        (!v.keys().any(|k| k.contains("jobid=\"r1\""))).then_some(v)
    })
    .unwrap_or_else(|| panic!("job series still there: {:#?}", p.values()));
    assert_eq!(gone["tau_metric_proxy_run_total{operation=\"exec\"}"], 2.0);
    assert_eq!(gone["tau_metric_proxy_jobs"], 0.0);
    assert!(!p.metrics_text().contains("jobid=\"r1\""));
}

#[test]
fn max_jobs_evicts_the_job_that_finished_first() {
    let p = Proxy::start_with(&["--max-jobs", "1"]);
    run_in_job(&p, "first", &["true"]);
    wait_for(Duration::from_secs(10), || {
        p.values().contains_key("tau_job_end_time_seconds{jobid=\"first\"}").then_some(())
    });
    run_in_job(&p, "second", &["true"]);
    assert_eq!(p.wait_value("tau_metric_proxy_job_evictions_total", 1.0), 1.0);
    let v = p.values();
    assert!(!v.keys().any(|k| k.contains("jobid=\"first\"")), "{v:#?}");
    assert_eq!(v.get("tau_job_run_total{jobid=\"second\",operation=\"exec\"}"), Some(&1.0));
    assert_eq!(v["tau_metric_proxy_run_total{operation=\"exec\"}"], 2.0);
}

/// The series names of `tau_metric_client ARGS -f json` (a list or values).
fn names(p: &Proxy, args: &[&str]) -> Vec<String> {
    let out = p.client(&[args, &["-f", "json"]].concat());
    out.assert_success();
    let json: serde_json::Value = serde_json::from_slice(out.stdout_bytes()).unwrap_or_else(|e| out.fail(e));
    json.as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_client_lists_the_jobs_and_keeps_to_one_job() {
    let p = Proxy::start();
    run_in_job(&p, "a", &["true"]);
    for _ in 0..2 {
        run_in_job(&p, "b", &["true"]);
    }
    wait_for(Duration::from_secs(10), || {
        p.values().contains_key("tau_job_end_time_seconds{jobid=\"b\"}").then_some(())
    });
    // --jobs: both, by start, in the four formats.
    let out = p.client(&["--jobs", "-f", "json"]);
    let jobs: serde_json::Value = serde_json::from_slice(out.assert_success().stdout_bytes()).unwrap();
    let got: Vec<(&str, u64, &serde_json::Value)> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_str().unwrap(), j["collectors"].as_u64().unwrap(), &j["commands"]))
        .collect();
    let cmds = serde_json::json!(["tau_metric_proxy_run"]);
    assert_eq!(got, [("a", 1, &cmds), ("b", 2, &cmds)]);
    let (start, end) = (jobs[1]["start"].as_f64().unwrap(), jobs[1]["end"].as_f64().unwrap());
    assert!(end >= start, "{jobs}");
    let txt = p.client(&["--jobs", "-f", "txt", "--job", "b"]);
    txt.assert_success()
        .assert_stdout(&format!("# id ranks start end command\nb - {start:.6} {end:.6} \"tau_metric_proxy_run\"\n"));
    assert!(p.client(&["--jobs", "-f", "yaml"]).stdout().starts_with("- id: \"a\"\n  ranks: []\n"));
    assert!(p.client(&["--jobs"]).stdout().contains(" • b (finished) : ranks - (0 connected)\n"));
    // --job: the job's series only, by their names or the node's.
    assert_eq!(
        names(&p, &["-l", "--job", "b"]),
        [
            "tau_job_end_time_seconds{jobid=\"b\"}",
            "tau_job_ranks{jobid=\"b\"}",
            "tau_job_run_total{jobid=\"b\",operation=\"exec\"}",
            "tau_job_start_time_seconds{jobid=\"b\"}"
        ]
    );
    assert_eq!(names(&p, &["-v", "--job", "b"]).len(), 4);
    let out = p.client(&["-g", "tau_metric_proxy_run_total{operation=\"exec\"}", "--job", "b", "-f", "txt"]);
    let line = out.assert_success().stdout();
    assert!(
        line.starts_with("# name ts value\ntau_job_run_total{jobid=\"b\",operation=\"exec\"} ")
            && line.ends_with(" 2\n"),
        "{out}"
    );
    p.client(&["-g", "tau_metric_proxy_run_total{operation=\"exec\"}", "--job", "zz"]).assert_exit(1).assert_stderr(
        "tau_metric_client: error: no such metric in the proxy: tau_job_run_total{jobid=\"zz\",operation=\"exec\"}\n",
    );
    p.client(&["-v", "--job", "a b"]).assert_exit(2).assert_stderr(
        "tau_metric_client: error: invalid value 'a b' for '--job <ID>': a job id holds printable ASCII but not ' ' \
         (see tau_metric_client --help)\n",
    );
    // -t --job: only the job's series, tracked.
    let dir = crate::util::TempDir::new("track-job");
    let file = dir.join("track.json");
    let child = p.tool("tau_metric_client").args(["-t", "--job", "a", "-F", "20", "-o"]).arg(&file).spawn();
    wait_for(Duration::from_secs(10), || std::fs::read_to_string(&file).ok().filter(|s| s.contains("jobid")));
    child.signal(nix::sys::signal::Signal::SIGINT);
    child.wait().assert_exit(0);
    let log: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let tracked: Vec<&str> = log[0].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(
        tracked,
        [
            "tau_job_end_time_seconds{jobid=\"a\"}",
            "tau_job_run_total{jobid=\"a\",operation=\"exec\"}",
            "tau_job_start_time_seconds{jobid=\"a\"}"
        ],
        "non-null series of job a: {log}"
    );
}
