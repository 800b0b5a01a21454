//! Which job a collector belongs to, and its rank there.
//!
//! The job id is, first found: the id the launcher was given (`-j`, passed
//! on as [`protocol::JOB_ENV`]), a scheduler's id (Slurm with its step, PBS,
//! LSF, Flux), and outside any scheduler the MPI launcher's own job: Open
//! MPI's `PMIX_NAMESPACE`, or for MPICH's Hydra, which names no job, its
//! per-node proxy process (the ranks' common ancestor), as
//! `hydra-PID-START`: that id is node-local, the ranks of one Hydra job on
//! two nodes get two ids. A value that [`protocol::check_job_id`] refuses is
//! skipped. The rank is only kept along with a job.

/// Rank variables, first found: Open MPI, MPICH (PMI), Slurm, PMIx.
const RANK_VARS: [&str; 4] = ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID", "PMIX_RANK"];

/// Job id variables after [`protocol::JOB_ENV`] and Slurm: PBS/Torque,
/// LSF, Flux, then Open MPI's launcher.
const JOB_VARS: [&str; 4] = ["PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID", "PMIX_NAMESPACE"];

/// The command name of MPICH's per-node launcher process.
const HYDRA_PROXY: &str = "hydra_pmi_proxy";

use protocol::JobTag;

/// What [`resolve`] needs to know of the process tree.
pub(crate) trait Processes {
    /// Parent pid and start time of `pid`.
    fn parent(&self, pid: u32) -> Option<(u32, u64)>;
    /// Command name of `pid`.
    fn comm(&self, pid: u32) -> Option<String>;
}

/// The real process tree, read from `/proc`.
pub(crate) struct Proc;

impl Processes for Proc {
    fn parent(&self, pid: u32) -> Option<(u32, u64)> {
        let ppid = procinfo::stat(pid)?.ppid;
        Some((ppid, procinfo::stat(ppid)?.start_time))
    }

    fn comm(&self, pid: u32) -> Option<String> {
        procinfo::comm(pid)
    }
}

/// This process's job and rank, from its environment and ancestors.
pub fn own_job() -> Option<JobTag> {
    resolve(|k| std::env::var(k).ok(), &Proc, std::process::id())
}

/// The job of process `pid` whose environment is `env`.
pub(crate) fn resolve(env: impl Fn(&str) -> Option<String>, procs: &dyn Processes, pid: u32) -> Option<JobTag> {
    let usable = |v: Option<String>| v.filter(|v| protocol::check_job_id(v).is_ok());
    let slurm = || {
        let job = env("SLURM_JOB_ID")?;
        Some(match env("SLURM_STEP_ID") {
            Some(step) if !step.is_empty() => format!("{job}.{step}"),
            _ => job,
        })
    };
    let id = usable(env(protocol::JOB_ENV))
        .or_else(|| usable(slurm()))
        .or_else(|| JOB_VARS.iter().find_map(|k| usable(env(k))))
        .or_else(|| env("PMI_RANK").and_then(|_| hydra_proxy(procs, pid)))?;
    Some(JobTag { id, rank: rank(&env) })
}

/// The rank the launcher's variables give, if any.
pub(crate) fn rank(env: &impl Fn(&str) -> Option<String>) -> Option<u32> {
    RANK_VARS.iter().find_map(|k| env(k)?.trim().parse().ok())
}

/// This process's rank, from its environment.
pub fn own_rank() -> Option<u32> {
    rank(&|k| std::env::var(k).ok())
}

/// `hydra-PID-START` of the nearest ancestor named [`HYDRA_PROXY`].
fn hydra_proxy(procs: &dyn Processes, pid: u32) -> Option<String> {
    let mut pid = pid;
    // A process tree is shallow; the bound only guards against a loop.
    for _ in 0..64 {
        let (parent, start) = procs.parent(pid)?;
        if parent <= 1 {
            return None;
        }
        if procs.comm(parent).as_deref() == Some(HYDRA_PROXY) {
            return Some(format!("hydra-{parent}-{start}"));
        }
        pid = parent;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// pid -> (parent, parent's start time, own name).
    struct Tree(HashMap<u32, (u32, u64, &'static str)>);

    impl Processes for Tree {
        fn parent(&self, pid: u32) -> Option<(u32, u64)> {
            self.0.get(&pid).map(|&(p, s, _)| (p, s))
        }
        fn comm(&self, pid: u32) -> Option<String> {
            self.0.get(&pid).map(|&(_, _, n)| n.to_owned())
        }
    }

    /// rank (pid 30) <- tau_metric_proxy_run (20) <- hydra_pmi_proxy (10, started at 777) <- mpiexec (5) <- init.
    fn hydra() -> Tree {
        Tree(HashMap::from([
            (30, (20, 900, "app")),
            (20, (10, 777, "tau_metric_prox")),
            (10, (5, 600, "hydra_pmi_proxy")),
            (5, (1, 1, "mpiexec.hydra")),
        ]))
    }

    fn job(vars: &[(&str, &str)], procs: &dyn Processes) -> Option<JobTag> {
        let env: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        resolve(|k| env.get(k).cloned(), procs, 30)
    }

    fn id(vars: &[(&str, &str)]) -> Option<String> {
        job(vars, &hydra()).map(|j| j.id)
    }

    #[test]
    fn the_first_source_found_names_the_job() {
        let all = [
            ("TAU_METRIC_PROXY_JOB", "mine"),
            ("SLURM_JOB_ID", "4242"),
            ("SLURM_STEP_ID", "3"),
            ("PBS_JOBID", "17.pbs"),
            ("LSB_JOBID", "88"),
            ("FLUX_JOB_ID", "f2Xbc9"),
            ("PMIX_NAMESPACE", "prterun-n1-1234@1"),
            ("PMI_RANK", "0"),
        ];
        let want = ["mine", "4242.3", "17.pbs", "88", "f2Xbc9", "prterun-n1-1234@1", "hydra-10-777"];
        for (skip, want) in [0, 1, 3, 4, 5, 6, 7].into_iter().zip(want) {
            assert_eq!(id(&all[skip..]).as_deref(), Some(want), "without the first {skip}");
        }
        assert_eq!(id(&[("SLURM_JOB_ID", "4242")]).as_deref(), Some("4242"), "no step");
        assert_eq!(id(&[("SLURM_JOB_ID", "4242"), ("SLURM_STEP_ID", "")]).as_deref(), Some("4242"));
    }

    #[test]
    fn no_source_is_no_job_and_no_rank() {
        assert_eq!(job(&[], &hydra()), None);
        assert_eq!(job(&[("OMPI_COMM_WORLD_RANK", "2")], &hydra()), None, "a rank alone is no job");
    }

    #[test]
    fn an_unusable_value_is_skipped() {
        assert_eq!(id(&[("TAU_METRIC_PROXY_JOB", ""), ("LSB_JOBID", "88")]).as_deref(), Some("88"));
        assert_eq!(id(&[("TAU_METRIC_PROXY_JOB", "a b"), ("LSB_JOBID", "88")]).as_deref(), Some("88"));
        assert_eq!(id(&[("PBS_JOBID", &"x".repeat(200))]), None);
    }

    #[test]
    fn hydra_is_found_among_the_ancestors_or_not_at_all() {
        let mut t = hydra();
        t.0.insert(10, (5, 600, "bash"));
        assert_eq!(job(&[("PMI_RANK", "1")], &t), None, "no hydra_pmi_proxy above");
        assert_eq!(job(&[], &hydra()), None, "Hydra ranks have PMI_RANK");
        let mut looped = hydra();
        looped.0.insert(10, (30, 600, "bash"));
        assert_eq!(job(&[("PMI_RANK", "1")], &looped), None, "a loop ends");
    }

    #[test]
    fn the_rank_comes_from_the_launchers_variables() {
        let with = |vars: &[(&str, &str)]| job(&[&[("LSB_JOBID", "88")], vars].concat(), &hydra()).and_then(|j| j.rank);
        assert_eq!(with(&[("OMPI_COMM_WORLD_RANK", "3"), ("PMI_RANK", "1")]), Some(3));
        assert_eq!(with(&[("PMI_RANK", "1"), ("SLURM_PROCID", "2")]), Some(1));
        assert_eq!(with(&[("SLURM_PROCID", "2"), ("PMIX_RANK", "5")]), Some(2));
        assert_eq!(with(&[("PMIX_RANK", "5")]), Some(5));
        assert_eq!(with(&[("PMIX_RANK", "x"), ("OMPI_COMM_WORLD_RANK", "bad")]), None);
        assert_eq!(job(&[("PMI_RANK", "7")], &hydra()), Some(JobTag { id: "hydra-10-777".into(), rank: Some(7) }));
    }
}
