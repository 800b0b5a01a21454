//! End-of-job profiles (`--profile-dir`) and `tau_metric_client --report`:
//! a deliberately imbalanced MPI program under real `mpirun` (Open MPI and
//! MPICH) gives the per-rank minimum, maximum and rank of the maximum; two
//! daemons standing in for two nodes give one merged report; corrupt and
//! foreign files are named; an unwritable or full directory is counted and
//! the daemon carries on.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::util::{bin, cmd, mpi_test, wait_for, FullFs, Mpi, Proxy, TempDir};

/// How long rank 0 of `mpi_imbalance` sleeps before its barrier.
const SLEEP_MS: u64 = 400;

/// A daemon writing its profiles to `dir` as node `node`.
fn node_proxy(dir: &Path, node: &str) -> Proxy {
    Proxy::start_with(&["--profile-dir", dir.to_str().unwrap(), "--node-name", node])
}

/// `mpi_imbalance SLEEP` on `np` ranks under `proxy`, in job `job`.
fn run_job(mpi: Mpi, proxy: &Proxy, job: &str, np: usize, sleep_ms: u64) {
    let prog = mpi.program("mpi_imbalance");
    let launcher = bin("tau_metric_proxy_run");
    let sleep = sleep_ms.to_string();
    let args: Vec<&OsStr> = vec![
        launcher.as_os_str(),
        OsStr::new("-u"),
        proxy.socket.as_os_str(),
        OsStr::new("-j"),
        OsStr::new(job),
        OsStr::new("-m"),
        OsStr::new("--"),
        prog.as_os_str(),
        OsStr::new(&sleep),
    ];
    mpi.mpirun(np, None, &args).run().assert_success();
}

/// Waits for the profile of `job` on `node` in `dir` and parses it.
fn wait_profile(proxy: &Proxy, dir: &Path, job: &str, node: &str) -> (PathBuf, Value) {
    let path = dir.join(format!("{job}@{node}.json"));
    let text = wait_for(Duration::from_secs(15), || std::fs::read_to_string(&path).ok());
    let text = text.unwrap_or_else(|| panic!("no profile {} appeared; daemon log:\n{}", path.display(), proxy.log()));
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()));
    println!("{}: {} bytes", path.display(), text.len());
    (path, value)
}

/// The entry of `name` in a family (`mpi` or `syscalls`) of a profile.
fn entry<'a>(profile: &'a Value, family: &str, name: &str) -> &'a Value {
    profile[family]["entries"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in the profile's {family}: {profile:#}"))
}

/// `(total, min, mean, max, max_rank)` of a measure.
fn measure(m: &Value) -> (f64, f64, f64, f64, Option<u64>) {
    let f = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("{k} in {m}"));
    (f("total"), f("min"), f("mean"), f("max"), m["max_rank"].as_u64())
}

mpi_test! {
    /// Rank 0 sleeps before the barrier: the others wait in it, so the
    /// barrier's maximum is theirs and its minimum rank 0's; calls and bytes
    /// per rank are exact.
    fn openmpi_profile_shows_the_ranks_imbalance, mpich_profile_shows_the_ranks_imbalance(mpi) {
        let dir = TempDir::new("profiles");
        let proxy = node_proxy(dir.path(), "node01");
        let job = format!("imbalance-{}", mpi.name);
        run_job(mpi, &proxy, &job, 4, SLEEP_MS);
        let (_, p) = wait_profile(&proxy, dir.path(), &job, "node01");
        assert_eq!((p["kind"].as_str(), p["schema"].as_u64()), (Some("tau_metric_proxy profile"), Some(1)));
        assert_eq!((p["job"].as_str(), p["node"].as_str()), (Some(job.as_str()), Some("node01")));
        assert_eq!(p["mpi"]["ranks"], 4);
        let ranks: Vec<u64> = p["ranks"]["list"].as_array().unwrap().iter().map(|r| r["rank"].as_u64().unwrap()).collect();
        assert_eq!(ranks, [0, 1, 2, 3]);
        let mut names: Vec<&str> =
            p["mpi"]["entries"]["list"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["MPI_Barrier", "MPI_Comm_rank", "MPI_Comm_size", "MPI_Finalize", "MPI_Init", "MPI_Recv", "MPI_Send"]);
        for once in ["MPI_Init", "MPI_Comm_rank", "MPI_Comm_size", "MPI_Barrier", "MPI_Finalize"] {
            assert_eq!(measure(&entry(&p, "mpi", once)["hits"]), (4.0, 1.0, 1.0, 1.0, Some(0)), "{once}");
        }
        // Rank r sends r messages of 8 bytes; rank 0 receives all 6.
        assert_eq!(measure(&entry(&p, "mpi", "MPI_Send")["hits"]), (6.0, 0.0, 1.5, 3.0, Some(3)));
        assert_eq!(measure(&entry(&p, "mpi", "MPI_Send")["bytes"]), (48.0, 0.0, 12.0, 24.0, Some(3)));
        assert_eq!(measure(&entry(&p, "mpi", "MPI_Recv")["hits"]), (6.0, 0.0, 1.5, 6.0, Some(0)));
        assert_eq!(measure(&entry(&p, "mpi", "MPI_Recv")["bytes"]), (48.0, 0.0, 12.0, 48.0, Some(0)));
        // The barrier: the ranks that waited for rank 0's sleep hold the
        // maximum, rank 0 (which came last) the minimum.
        let (total, min, mean, max, max_rank) = measure(&entry(&p, "mpi", "MPI_Barrier")["time"]);
        println!("{}: MPI_Barrier seconds: min {min}, mean {mean}, max {max} (rank {max_rank:?}), total {total}", mpi.name);
        assert_ne!(max_rank, Some(0), "rank 0 slept, it cannot have waited longest");
        let half = SLEEP_MS as f64 / 2000.0;
        assert!(max > half && min < half, "max {max} s, min {min} s around half the sleep, {half} s");
        // Per rank: rank 0, which never waited, spent the least time in MPI.
        let in_mpi: Vec<f64> = p["ranks"]["list"].as_array().unwrap().iter().map(|r| r["mpi_time"].as_f64().unwrap()).collect();
        let walls: Vec<f64> = p["ranks"]["list"].as_array().unwrap().iter().map(|r| r["wall"].as_f64().unwrap()).collect();
        println!("{}: seconds in MPI per rank {in_mpi:?}, wall {walls:?}", mpi.name);
        assert!(walls.iter().all(|&w| w > 0.0), "{walls:?}");
        assert!(in_mpi[1..].iter().all(|&t| t > in_mpi[0]), "{in_mpi:?}");
        assert_eq!(proxy.value("tau_metric_proxy_profiles_total{result=\"written\"}"), 1.0);
    }
}

mpi_test! {
    /// One job on two nodes (two daemons, one job id given with `-j` on
    /// both): `--report` on the two profiles adds them up exactly, in
    /// every format; a profile of another job in the same call is refused.
    fn openmpi_report_merges_two_nodes, mpich_report_merges_two_nodes(mpi) {
        let dir = TempDir::new("report");
        let job = format!("4242.{}", mpi.name);
        let mut files = Vec::new();
        for node in ["node01", "node02"] {
            let proxy = node_proxy(&dir.join(node), node);
            run_job(mpi, &proxy, &job, 2, 0);
            files.push(wait_profile(&proxy, &dir.join(node), &job, node).0);
        }
        let report = |format: &str| {
            let out = cmd(bin("tau_metric_client")).arg("--report").args(&files).args(["-f", format]).run();
            out.assert_success();
            out.stdout()
        };
        let r: Value = serde_json::from_str(&report("json")).unwrap();
        assert_eq!(r["job"], job.as_str());
        assert_eq!(r["nodes"], serde_json::json!(["node01", "node02"]));
        assert_eq!((r["ranks"].as_u64(), r["mpi"]["ranks"].as_u64()), (Some(4), Some(4)));
        let row = |name: &str| {
            r["mpi"]["top"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{name}: {r:#}")).clone()
        };
        for once in ["MPI_Init", "MPI_Barrier", "MPI_Finalize"] {
            assert_eq!(row(once)["hits"]["total"], 4, "{once}");
        }
        // On each node rank 1 sent one message of 8 bytes to rank 0.
        assert_eq!((row("MPI_Send")["hits"]["total"].as_u64(), row("MPI_Send")["bytes"]["total"].as_u64()), (Some(2), Some(16)));
        assert_eq!((row("MPI_Send")["hits"]["mean"].as_f64(), row("MPI_Send")["hits"]["max_rank"].as_u64()), (Some(0.5), Some(1)));
        assert_eq!(row("MPI_Recv")["hits"]["total"], 2);
        let rows = r["rank_rows"].as_array().unwrap();
        let nodes: Vec<(&str, u64)> = rows.iter().map(|k| (k["node"].as_str().unwrap(), k["rank"].as_u64().unwrap())).collect();
        assert_eq!(nodes, [("node01", 0), ("node01", 1), ("node02", 0), ("node02", 1)]);
        let txt = report("txt");
        println!("{txt}");
        assert!(txt.starts_with(&format!("Job {job}\n  nodes:      2 (node01, node02)\n  ranks:      4\n")), "{txt}");
        // Aligned columns (their widths follow the figures).
        let lines: Vec<Vec<&str>> = txt.lines().map(|l| l.split_whitespace().collect()).collect();
        let at = txt.lines().position(|l| l == "MPI time per rank").unwrap_or_else(|| panic!("{txt}"));
        assert_eq!(lines[at + 1], ["node", "rank", "wall", "(s)", "MPI", "(s)", "MPI", "%"], "{txt}");
        let rows: Vec<(&str, &str)> = lines[at + 2..at + 6].iter().map(|l| (l[0], l[1])).collect();
        assert_eq!(rows, [("node01", "0"), ("node01", "1"), ("node02", "0"), ("node02", "1")], "{txt}");
        let widths: Vec<usize> = txt.lines().skip(at + 1).take(5).map(str::len).collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "{txt}");
        let md = report("md");
        assert!(md.starts_with(&format!("# Job {job}\n\n- nodes: 2 (node01, node02)\n")), "{md}");
        assert!(md.contains("\n| function | calls | bytes | time (s) | % of MPI |"), "{md}");
        // A profile of another job among them.
        let other = dir.join("other.json");
        let text = std::fs::read_to_string(&files[1]).unwrap();
        std::fs::write(&other, text.replacen(&format!("\"job\": \"{job}\""), "\"job\": \"4343\"", 1)).unwrap();
        let out = cmd(bin("tau_metric_client")).arg("--report").arg(&files[0]).arg(&other).run();
        out.assert_exit(2);
        assert_eq!(
            out.stderr(),
            format!(
                "tau_metric_client: error: profiles of different jobs: {} is job {job}, {} is job 4343; give the profiles of one job\n",
                files[0].display(),
                other.display()
            )
        );
        assert_eq!(out.stdout(), "");
    }
}

/// A job of one command outside MPI: the launcher's collector has no rank,
/// it shows in the commands and counts nowhere per rank.
fn rankless_profile(dir: &TempDir) -> (Proxy, PathBuf, Value) {
    let proxy = node_proxy(dir.path(), "node01");
    proxy.tool("tau_metric_proxy_run").args(["-j", "solo", "--", "true"]).run().assert_success();
    let (path, p) = wait_profile(&proxy, dir.path(), "solo", "node01");
    (proxy, path, p)
}

#[test]
fn corrupt_foreign_and_other_schema_profiles_are_named() {
    let dir = TempDir::new("profiles");
    let (proxy, good, p) = rankless_profile(&dir);
    assert_eq!((p["collectors"].as_u64(), p["rankless_collectors"].as_u64()), (Some(1), Some(1)));
    assert_eq!(p["commands"]["list"], serde_json::json!([{"program": "tau_metric_proxy_run", "collectors": 1}]));
    assert_eq!((p["ranks"]["list"].as_array().map(Vec::len), p["mpi"]["ranks"].as_u64()), (Some(0), Some(0)));
    let text = std::fs::read_to_string(&good).unwrap();
    let report = |file: &Path| cmd(bin("tau_metric_client")).arg("--report").arg(&good).arg(file).run();
    let corrupt = dir.join("corrupt.json");
    std::fs::write(&corrupt, &text[..text.len() / 2]).unwrap();
    let out = report(&corrupt);
    out.assert_exit(1);
    let want = format!("tau_metric_client: error: {}: corrupt profile: not JSON: EOF while parsing", corrupt.display());
    assert!(out.stderr().starts_with(&want), "{}", out.stderr());
    // The JSON of another tool: this client's own value listing.
    let foreign = dir.join("values.json");
    let values = proxy.client(&["-v", "-f", "json"]);
    values.assert_success();
    std::fs::write(&foreign, values.stdout()).unwrap();
    let out = report(&foreign);
    out.assert_exit(1);
    out.assert_stderr(&format!(
        "tau_metric_client: error: {}: not a tau_metric_proxy profile (a JSON array, where a profile has \"kind\": \"tau_metric_proxy profile\")\n",
        foreign.display()
    ));
    let newer = dir.join("newer.json");
    std::fs::write(&newer, text.replacen("\"schema\": 1,", "\"schema\": 2,", 1)).unwrap();
    report(&newer).assert_exit(1).assert_stderr(&format!(
        "tau_metric_client: error: {}: profile of schema 2, this version reads schema 1\n",
        newer.display()
    ));
    let missing = dir.join("missing.json");
    report(&missing).assert_exit(1).assert_stderr(&format!(
        "tau_metric_client: error: cannot read {}: No such file or directory (os error 2)\n",
        missing.display()
    ));
    let out = cmd(bin("tau_metric_client")).arg("--report").arg(&good).args(["-f", "yaml"]).run();
    out.assert_exit(2).assert_stderr(
        "tau_metric_client: error: --report writes md, json or txt, not yaml (see tau_metric_client --help)\n",
    );
}

#[test]
fn an_unwritable_or_full_profile_dir_is_counted_and_the_daemon_lives() {
    let dir = TempDir::new("profiles-bad");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let full = FullFs::mount(dir.join("full"));
    for (profile_dir, why) in
        [(file.join("profiles"), "Not a directory"), (full.path().to_owned(), "No space left on device")]
    {
        let proxy = node_proxy(&profile_dir, "node01");
        for (n, job) in ["j1", "j2"].into_iter().enumerate() {
            proxy.tool("tau_metric_proxy_run").args(["-j", job, "--", "true"]).run().assert_success();
            let failed = proxy.wait_value("tau_metric_proxy_profiles_total{result=\"failed\"}", n as f64 + 1.0);
            assert_eq!(failed, n as f64 + 1.0, "{}; log:\n{}", profile_dir.display(), proxy.log());
        }
        assert_eq!(proxy.value("tau_metric_proxy_profiles_total{result=\"written\"}"), 0.0);
        let log = proxy.log();
        assert!(log.contains("WARN (profiles:") && log.contains("cannot write the profile of job j2: "), "{log}");
        assert!(log.contains(why), "{why}: {log}");
        // Nothing is left behind but what was there.
        if profile_dir == full.path() {
            let names: Vec<_> = std::fs::read_dir(full.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, ["filler"]);
        }
    }
}
