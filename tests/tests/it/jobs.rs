//! Jobs: every collector names its job and rank in its identity, as the
//! daemon's `-v` log shows: `tau_metric_proxy_run -j`, the scheduler's
//! variables, and under a plain `mpirun` (Open MPI and MPICH) the
//! launcher's own job.

use std::collections::BTreeSet;
use std::ffi::OsStr;

use crate::util::{mpi_test, tool, Proxy, TestCommand};

/// Every variable a job or rank may come from, removed so the test's own
/// environment (a CI job under a scheduler) cannot leak in.
const SOURCES: [&str; 11] = [
    "TAU_METRIC_PROXY_JOB",
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "SLURM_PROCID",
    "PBS_JOBID",
    "LSB_JOBID",
    "FLUX_JOB_ID",
    "PMIX_NAMESPACE",
    "PMIX_RANK",
    "PMI_RANK",
    "OMPI_COMM_WORLD_RANK",
];

fn clean(mut cmd: TestCommand) -> TestCommand {
    for k in SOURCES {
        cmd = cmd.env_remove(k);
    }
    cmd
}

/// What follows `connected` in the daemon's line for each collector
/// named `program`, in log order.
fn connections(p: &Proxy, program: &str) -> Vec<String> {
    let prefix = format!("collector {program} (pid ");
    p.log()
        .lines()
        .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest.to_owned()))
        .filter_map(|rest| rest.split_once(") connected").map(|(_, tail)| tail.to_owned()))
        .collect()
}

/// Waits until `n` collectors named `program` connected.
fn wait_connections(p: &Proxy, program: &str, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    crate::util::wait_for(std::time::Duration::from_secs(10), || {
        seen = connections(p, program);
        (seen.len() >= n).then_some(())
    });
    seen
}

#[test]
fn j_names_the_job_of_the_launcher_and_of_the_tracer() {
    let p = Proxy::start_with(&["-v"]);
    clean(p.tool("tau_metric_proxy_run")).args(["-j", "4242", "-s", "--", "/bin/true"]).run().assert_exit(0);
    assert_eq!(wait_connections(&p, "tau_metric_proxy_run", 1), [", job 4242"]);
    assert_eq!(wait_connections(&p, "tau_strace", 1), [", job 4242"]);
}

#[test]
fn the_scheduler_names_the_job_and_j_comes_first() {
    let p = Proxy::start_with(&["-v"]);
    let slurm = [("SLURM_JOB_ID", "77"), ("SLURM_STEP_ID", "2"), ("SLURM_PROCID", "5"), ("PBS_JOBID", "9.pbs")];
    let run = |args: &[&str], vars: &[(&str, &str)]| {
        clean(p.tool("tau_metric_proxy_run")).envs(vars.iter().copied()).args(args).run().assert_exit(0);
    };
    run(&["--", "/bin/true"], &slurm);
    run(&["--", "/bin/true"], &slurm[3..]);
    run(&["-j", "mine", "--", "/bin/true"], &slurm);
    run(&["--", "/bin/true"], &[("TAU_METRIC_PROXY_JOB", "env-job"), ("SLURM_JOB_ID", "77")]);
    run(&["--", "/bin/true"], &[]);
    run(&["--", "/bin/true"], &[("OMPI_COMM_WORLD_RANK", "3")]);
    assert_eq!(
        wait_connections(&p, "tau_metric_proxy_run", 6),
        [", job 77.2 rank 5", ", job 9.pbs", ", job mine rank 5", ", job env-job", "", ""]
    );
}

#[test]
fn a_bad_job_id_is_a_usage_error_and_the_help_names_j() {
    tool("tau_metric_proxy_run").args(["-j", "a b", "--", "/bin/true"]).run().assert_exit(2).assert_stderr(
        "tau_metric_proxy_run: error: invalid value 'a b' for '-j <ID>': a job id holds printable ASCII but not ' ' \
         (see tau_metric_proxy_run --help)\n",
    );
    let help = tool("tau_metric_proxy_run").arg("-h").run();
    help.assert_exit(0);
    assert!(
        help.stdout().contains(
            "-j [ID]: count the command as part of job ID (else TAU_METRIC_PROXY_JOB,\n         \
             the scheduler's job, or the MPI launcher's)\n"
        ),
        "{help}"
    );
}

mpi_test! {
    /// A plain `mpirun -np 3 tau_metric_proxy_run -m -- ./app` is one job:
    /// each rank's launcher and shim report it, with the rank the program
    /// itself sees.
    fn openmpi_a_plain_mpirun_is_one_job, mpich_a_plain_mpirun_is_one_job(mpi) {
        let p = Proxy::start_with(&["-v"]);
        let prog = mpi.program("job_env");
        let out = clean(mpi.mpirun(3, Some(&p.socket), &[prog.as_os_str()])).run();
        out.assert_exit(0);
        // "PID RANK JOB" per rank, as the program found them.
        let ranks: Vec<(String, u32, String)> = out
            .stdout()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                assert_eq!(f.len(), 3, "{out}");
                (f[0].to_owned(), f[1].parse().unwrap(), f[2].to_owned())
            })
            .collect();
        assert_eq!(ranks.iter().map(|r| r.1).collect::<BTreeSet<_>>(), BTreeSet::from([0, 1, 2]), "{out}");
        let job = ranks[0].2.clone();
        assert!(ranks.iter().all(|r| r.2 == job), "{out}");
        // Open MPI names its job; Hydra does not, its proxy does.
        assert_ne!(job, "unknown", "{out}");
        assert_eq!(job.starts_with("hydra-"), mpi.name == "mpich", "{job}");
        let name = prog.file_name().and_then(OsStr::to_str).unwrap().to_owned();
        wait_connections(&p, &name, 3);
        for (pid, rank, _) in &ranks {
            let line = format!("collector {name} (pid {pid}) connected, job {job} rank {rank}");
            assert!(p.log().contains(&line), "{line} missing:\n{}", p.log());
        }
        let mut launchers = wait_connections(&p, "tau_metric_proxy_run", 3);
        launchers.sort();
        let want: Vec<String> = (0..3).map(|r| format!(", job {job} rank {r}")).collect();
        assert_eq!(launchers, want);
    }
}
