//! The PMPI shim under real `mpirun`, Open MPI and MPICH, through
//! `tau_metric_proxy_run -m`: exact calls and bytes per family, an absent,
//! late or stalled proxy, fork in a rank, a non-MPI program preloaded, the
//! wrong implementation's shim preloaded.
//!
//! The C program `tests/c/mpi_families.c` is compiled with each
//! implementation's `mpicc`; [`expected`] mirrors it call by call, with the
//! byte rules documented in the shim's crate docs.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{cmd, mpi_test, serial, wait_for, Mpi, Proxy, Run, TempDir, TestCommand, MPICH, OPENMPI};

/// `mpi_families` on 4 ranks, writing its MPI-IO file in `io`, through
/// the launcher with `-m` when `socket` is given.
fn families(mpi: Mpi, socket: Option<&Path>, io: &TempDir, extra: &[&str]) -> TestCommand {
    let prog = mpi.program("mpi_families");
    let mut args: Vec<&OsStr> = vec![prog.as_os_str(), io.path().as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    mpi.mpirun(4, socket, &args)
}

/// Every call and byte `mpi_families` makes on 4 ranks, keyed as the proxy lists them.
fn expected(mpi: Mpi, forked: bool) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = BTreeMap::new();
    let mut add = |f: &str, hits: u64, bytes: Option<u64>| {
        *m.entry(format!("mpi_hits_total{{function=\"{f}\"}}")).or_default() += hits as f64;
        if let Some(b) = bytes {
            *m.entry(format!("mpi_size_total{{function=\"{f}\"}}")).or_default() += b as f64;
        }
    };
    let large_count = mpi.name == "mpich";
    for r in 0..4u64 {
        let even = r % 2 == 0;
        let o = u64::from(!even);
        add("MPI_Init", 1, None);
        add("MPI_Comm_rank", 1, None);
        add("MPI_Comm_size", 1, None);
        // Point to point.
        add("MPI_Send", 2, Some(40)); // ring + MPI_PROC_NULL (0 bytes)
        add("MPI_Recv", 2 + 2 * o, Some(40 + o * (7 + 16))); // ring, PROC_NULL, ssend and bsend partners
        add("MPI_Irecv", 1 + o, Some(40 + o * 12));
        add("MPI_Isend", 1, Some(40));
        add("MPI_Waitall", 4, None);
        if even {
            add("MPI_Ssend", 1, Some(7));
            add("MPI_Rsend", 1, Some(12));
            add("MPI_Bsend", 1, Some(16));
        }
        add("MPI_Barrier", 2, None);
        add("MPI_Wait", 4 + o, None); // rsend partner, Iallreduce, Ibcast, Rput, File_iwrite_at
        add("MPI_Buffer_attach", 1, None);
        add("MPI_Buffer_detach", 1, None);
        add("MPI_Send_init", 1, Some(8));
        add("MPI_Recv_init", 1, Some(8));
        add("MPI_Start", 6, None);
        add("MPI_Request_free", 2, None);
        add("MPI_Sendrecv", 1, Some(32));
        add("MPI_Sendrecv_replace", 1, Some(96));
        if large_count {
            add("MPI_Send_c", 1, Some(12));
            add("MPI_Recv_c", 1, Some(12));
            add("MPI_Allreduce_c", 1, Some(32));
        }
        // Collectives.
        add("MPI_Bcast", 1, Some(32));
        add("MPI_Reduce", 2, Some(if r == 1 { 48 } else { 24 } + 8)); // root 1 receives; root 2 in place
        add("MPI_Allreduce", 2, Some(16 + 8));
        add("MPI_Gather", 1, Some(if r == 0 { 8 + 32 } else { 8 }));
        add("MPI_Gatherv", 1, Some(if r == 0 { 40 } else { (r + 1) * 4 }));
        add("MPI_Scatter", 1, Some(if r == 2 { 96 + 24 } else { 24 }));
        add("MPI_Scatterv", 1, Some([1, 1, 2, 6][r as usize]));
        add("MPI_Allgather", 1, Some(4 + 16));
        add("MPI_Allgatherv", 1, Some([1, 2, 1, 2][r as usize] * 4 + 24));
        add("MPI_Alltoall", 2, Some(64 + 16));
        add("MPI_Alltoallv", 1, Some(32));
        add("MPI_Type_contiguous", 1, None);
        add("MPI_Type_commit", 1, None);
        add("MPI_Alltoallw", 1, Some(48 + 48));
        add("MPI_Type_free", 1, None);
        add("MPI_Reduce_scatter_block", 1, Some(32 + 8));
        add("MPI_Reduce_scatter", 1, Some(40 + (r + 1) * 4));
        add("MPI_Scan", 1, Some(16));
        add("MPI_Exscan", 1, Some(8));
        add("MPI_Iallreduce", 1, Some(32));
        add("MPI_Ibcast", 1, Some(3));
        // Neighbourhood: a periodic 1-D ring (2 neighbours), then a directed ring.
        add("MPI_Cart_create", 1, None);
        add("MPI_Neighbor_allgather", 1, Some(4 + 8));
        add("MPI_Neighbor_alltoall", 2, Some(16 + 16 + (8 + 8)));
        add("MPI_Neighbor_allgatherv", 1, Some(4 + 8));
        add("MPI_Neighbor_alltoallv", 1, Some(12 + 12));
        add("MPI_Dist_graph_create_adjacent", 1, None);
        add("MPI_Comm_free", 2, None);
        // One-sided.
        add("MPI_Win_create", 1, None);
        add("MPI_Win_fence", 4, None);
        add("MPI_Put", 2, Some(8)); // second one to MPI_PROC_NULL
        add("MPI_Get", 1, Some(12));
        add("MPI_Accumulate", 1, Some(4));
        add("MPI_Get_accumulate", 1, Some(8));
        add("MPI_Fetch_and_op", 1, Some(8));
        add("MPI_Compare_and_swap", 1, Some(12));
        add("MPI_Win_lock_all", 1, None);
        add("MPI_Rput", 1, Some(4));
        add("MPI_Win_unlock_all", 1, None);
        add("MPI_Win_free", 1, None);
        // MPI-IO.
        add("MPI_File_open", 1, None);
        add("MPI_File_write_at", 1, Some(16));
        add("MPI_File_read_at", 1, Some(16));
        add("MPI_File_write_at_all", 1, Some(8));
        add("MPI_File_iwrite_at", 1, Some(16));
        add("MPI_File_close", 1, None);
        add("MPI_Finalize", 1, None);
    }
    if forked {
        add("MPI_Comm_rank", 5, None);
    }
    m
}

/// The proxy's `mpi_hits_total` and `mpi_size_total` series.
fn counts(p: &Proxy) -> BTreeMap<String, f64> {
    p.values().into_iter().filter(|(k, _)| k.starts_with("mpi_hits_total") || k.starts_with("mpi_size_total")).collect()
}

/// Waits until the proxy holds `want` (pushes arrive asynchronously), then
/// compares, so a mismatch shows the full difference.
fn assert_counts(p: &Proxy, want: &BTreeMap<String, f64>) {
    let mut got = BTreeMap::new();
    wait_for(Duration::from_secs(15), || {
        got = counts(p);
        (&got == want).then_some(())
    });
    let missing: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(v)).collect();
    let extra: Vec<_> = got.iter().filter(|(k, _)| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "expected but not in the proxy: {missing:?}\nunexpected: {extra:?}"
    );
}

/// Every function called has a time series, and some time was measured.
fn assert_times(p: &Proxy, want: &BTreeMap<String, f64>) {
    let values = p.values();
    let times: BTreeMap<&str, f64> =
        values.iter().filter_map(|(k, v)| Some((k.strip_prefix("mpi_time_total")?, *v))).collect();
    let called: Vec<&str> = want.keys().filter_map(|k| k.strip_prefix("mpi_hits_total")).collect();
    assert_eq!(times.keys().copied().collect::<Vec<_>>(), called);
    assert!(times.values().all(|t| *t >= 0.0 && t.is_finite()), "{times:?}");
    assert!(times["{function=\"MPI_Barrier\"}"] > 0.0, "{times:?}");
}

/// The run ended well and printed what `mpi_families` prints.
fn assert_done(out: &Run) {
    out.assert_success().assert_stdout("mpi_families: 4 ranks done\n");
}

mpi_test! {
    fn openmpi_every_family_counted_exactly, mpich_every_family_counted_exactly(mpi) {
        let p = Proxy::start();
        let io = TempDir::new("mpi-io");
        let out = families(mpi, Some(&p.socket), &io, &[]).run();
        assert_done(&out);
        // The shim adds nothing to the program's output.
        out.assert_stderr("");
        let want = expected(mpi, false);
        assert_counts(&p, &want);
        assert_times(&p, &want);
    }
}

mpi_test! {
    fn openmpi_proxy_absent_changes_nothing, mpich_proxy_absent_changes_nothing(mpi) {
        let dir = TempDir::new("mpi-absent");
        let absent = dir.join("absent.sock");
        let io = TempDir::new("mpi-io");
        let bare = families(mpi, None, &io, &["exit=3"]).run();
        let instrumented = families(mpi, Some(&absent), &io, &["exit=3"]).run();
        bare.assert_exit(3);
        instrumented.assert_exit(3);
        instrumented.assert_stdout(&bare.stdout());
        bare.assert_stdout("mpi_families: 4 ranks done\n");
    }
}

mpi_test! {
    fn openmpi_proxy_started_later_loses_nothing, mpich_proxy_started_later_loses_nothing(mpi) {
        let dir = TempDir::new("mpi-late");
        let socket = dir.join("late.sock");
        let go = dir.join("go");
        let io = TempDir::new("mpi-io");
        let wait_arg = format!("wait={}", go.display());
        let child = families(mpi, Some(&socket), &io, &[&wait_arg]).spawn();
        // The ranks communicate with no proxy, then rank 0 waits for `go`.
        std::thread::sleep(Duration::from_millis(500));
        let p = Proxy::start_at(dir, socket, &[]);
        // Periodic pushes reconnect and deliver what was counted meanwhile,
        // while the program still runs.
        assert_eq!(p.wait_value("mpi_hits_total{function=\"MPI_Init\"}", 4.0), 4.0);
        std::fs::write(&go, "").unwrap();
        assert_done(&child.wait());
        assert_counts(&p, &expected(mpi, false));
    }
}

mpi_test! {
    fn openmpi_stalled_proxy_does_not_hang_the_program, mpich_stalled_proxy_does_not_hang_the_program(mpi) {
        let p = Proxy::start();
        kill(Pid::from_raw(p.pid()), Signal::SIGSTOP).unwrap();
        let io = TempDir::new("mpi-io");
        // A hang detector, not a timing: every wait on the proxy is bounded.
        let out = families(mpi, Some(&p.socket), &io, &[]).spawn().finish_within(Duration::from_secs(120));
        kill(Pid::from_raw(p.pid()), Signal::SIGCONT).unwrap();
        assert_done(&out);
    }
}

mpi_test! {
    fn openmpi_fork_in_a_rank_counts_the_child_once, mpich_fork_in_a_rank_counts_the_child_once(mpi) {
        let p = Proxy::start();
        let io = TempDir::new("mpi-io");
        assert_done(&families(mpi, Some(&p.socket), &io, &["fork"]).run());
        // The child's 5 calls are added once; nothing of the parent is sent twice.
        assert_counts(&p, &expected(mpi, true));
    }
}

#[test]
fn non_mpi_programs_preloaded_run_unaffected() {
    let _serial = serial();
    let p = Proxy::start();
    for mpi in [OPENMPI, MPICH] {
        let shim = mpi.shim();
        // Directly preloaded: same output, same status, nothing pushed.
        let script = "echo out; echo err >&2; ls / > /dev/null; exit 5";
        let bare = cmd("sh").args(["-c", script]).run();
        let preloaded =
            cmd("sh").args(["-c", script]).env("LD_PRELOAD", &shim).env("TAU_METRIC_PROXY", &p.socket).run();
        preloaded.assert_exit(5).assert_stdout(&bare.stdout()).assert_stderr(&bare.stderr());
        // Under mpirun with -m: the shim is chosen from mpirun's environment.
        mpi.mpirun(2, Some(&p.socket), &["sh".as_ref(), "-c".as_ref(), "echo $((6 * 7))".as_ref()])
            .run()
            .assert_success()
            .assert_stdout("42\n42\n")
            .assert_stderr("");
    }
    let mpi_series: Vec<String> = p.values().into_keys().filter(|k| k.starts_with("mpi_")).collect();
    assert!(mpi_series.is_empty(), "{mpi_series:?}");
}

mpi_test! {
    fn openmpi_threads_are_counted_exactly, mpich_threads_are_counted_exactly(mpi) {
        let p = Proxy::start();
        let prog = mpi.build("mpi_threads", &format!("mpicc.{}", mpi.name), &["-pthread"]);
        mpi.mpirun(4, Some(&p.socket), &[prog.as_os_str()]).run().assert_success().assert_stdout("mpi_threads: done\n");
        // 4 ranks; 2 waves of 4 threads, each 10,000 MPI_Comm_rank and 1,000
        // MPI_Sendrecv of one double each way.
        let want: BTreeMap<String, f64> = [
            ("mpi_hits_total{function=\"MPI_Init_thread\"}", 4.0),
            ("mpi_hits_total{function=\"MPI_Comm_rank\"}", 4.0 * (1.0 + 8.0 * 10_000.0)),
            ("mpi_hits_total{function=\"MPI_Sendrecv\"}", 4.0 * 8.0 * 1_000.0),
            ("mpi_size_total{function=\"MPI_Sendrecv\"}", 4.0 * 8.0 * 1_000.0 * 16.0),
            ("mpi_hits_total{function=\"MPI_Barrier\"}", 4.0),
            ("mpi_hits_total{function=\"MPI_Finalize\"}", 4.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_counts(&p, &want);
    }
}

mpi_test! {
    /// Like `python3` with mpi4py: the program is not linked to MPI and loads
    /// a module that is, with `RTLD_LOCAL`; `-m` picks the shim from mpirun's
    /// environment and the shim finds `PMPI_*` in the privately loaded library.
    fn openmpi_interpreter_loading_mpi_is_counted, mpich_interpreter_loading_mpi_is_counted(mpi) {
        let p = Proxy::start();
        let host = mpi.build("mpi_host", "cc", &["-ldl"]);
        let plugin = mpi.build("mpi_plugin", &format!("mpicc.{}", mpi.name), &["-shared", "-fPIC"]);
        mpi.mpirun(2, Some(&p.socket), &[host.as_os_str(), plugin.as_os_str()])
            .run()
            .assert_success()
            .assert_stdout("mpi_plugin: 2 ranks\n");
        let mut want = BTreeMap::new();
        for f in ["MPI_Init", "MPI_Comm_rank", "MPI_Comm_size", "MPI_Allreduce", "MPI_Finalize"] {
            want.insert(format!("mpi_hits_total{{function=\"{f}\"}}"), 2.0);
        }
        want.insert("mpi_size_total{function=\"MPI_Allreduce\"}".to_owned(), 2.0 * 8.0);
        assert_counts(&p, &want);
    }
}

/// The real interpreter case: Debian's python3 running mpi4py (built
/// against Open MPI), preloaded through `mpirun` even though `python3`
/// itself links no MPI.
#[test]
fn openmpi_mpi4py_under_python3_is_counted() {
    let _serial = serial();
    OPENMPI.shim();
    let p = Proxy::start();
    let script = "from mpi4py import MPI\nc = MPI.COMM_WORLD\nc.Barrier()\nc.Barrier()\nif c.Get_rank() == 0:\n    print(c.Get_size())\n";
    let args = [OsStr::new("/usr/bin/python3"), OsStr::new("-c"), OsStr::new(script)];
    OPENMPI.mpirun(2, Some(&p.socket), &args).run().assert_success().assert_stdout("2\n");
    for (series, want) in [
        ("mpi_hits_total{function=\"MPI_Barrier\"}", 4.0),
        ("mpi_hits_total{function=\"MPI_Init_thread\"}", 2.0),
        ("mpi_hits_total{function=\"MPI_Finalize\"}", 2.0),
    ] {
        assert_eq!(p.wait_value(series, want), want, "{series}");
    }
}

/// The shim of one implementation preloaded by hand into a program of the
/// other: one clear line and an abort on the first MPI call, never a
/// crash inside the MPI library with truncated handles.
#[test]
fn wrong_shim_preloaded_aborts_with_a_clear_message() {
    let _serial = serial();
    let p = Proxy::start();
    for (shim_mpi, prog_mpi, built, found) in
        [(MPICH, OPENMPI, "MPICH", "Open MPI"), (OPENMPI, MPICH, "Open MPI", "not Open MPI")]
    {
        let prog = prog_mpi.program("mpi_families");
        let io = TempDir::new("mpi-io");
        let out = cmd(&prog).arg(io.path()).env("LD_PRELOAD", shim_mpi.shim()).env("TAU_METRIC_PROXY", &p.socket).run();
        let what = format!("{} shim in a {} program", shim_mpi.name, prog_mpi.name);
        out.assert_killed_by(Signal::SIGABRT).assert_stdout("");
        let err = out.stderr();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: {out}");
        let (head, tail) = lines[0].split_once(" comes from ").unwrap_or_else(|| out.fail(&what));
        assert_eq!(head, format!("tau_pmpi: this shim was built for {built} but PMPI_Init"), "{what}");
        let (lib, rest) = tail.split_once(", which is ").unwrap_or_else(|| out.fail(&what));
        let lib_file = Path::new(lib).file_name().unwrap().to_string_lossy().into_owned();
        let want_lib = if prog_mpi.name == "openmpi" { "libmpi.so" } else { "libmpich.so" };
        assert!(lib_file.starts_with(want_lib), "{what}: {lib}");
        assert_eq!(
            rest,
            format!(
                "{found}: aborting, as its MPI calls cannot be forwarded (preload the shim built for the program's MPI)"
            ),
            "{what}"
        );
    }
    let mpi_series: Vec<String> = p.values().into_keys().filter(|k| k.starts_with("mpi_")).collect();
    assert!(mpi_series.is_empty(), "{mpi_series:?}");
}

/// As under `srun --mpi=pmi2`: only `PMI_*` set, for a program linked to
/// no MPI. `-m` cannot tell which shim fits, says so on one line, and the
/// command runs unprofiled with its own output and status; a program
/// linked to MPI is still recognised from its own ELF.
#[test]
fn pmi_variables_alone_do_not_choose_a_shim() {
    let _serial = serial();
    let p = Proxy::start();
    let launcher = |args: &[&OsStr]| {
        let mut cmd = p.tool("tau_metric_proxy_run").args(["-v", "-m", "--"]).args(args);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if ["OMPI_", "HYDRA_", "MPIR_CVAR_", "PMI_"].iter().any(|p| k.starts_with(p)) {
                cmd = cmd.env_remove(&*k);
            }
        }
        cmd.envs([("PMI_RANK", "0"), ("PMI_SIZE", "1"), ("PMI_FD", "9"), ("PMI_JOBID", "7")]).run()
    };
    let out = launcher(&["sh".as_ref(), "-c".as_ref(), "echo $((6 * 7)); exit 3".as_ref()]);
    out.assert_exit(3).assert_stdout("42\n");
    let err = out.stderr();
    let refusal: Vec<&str> = err.lines().filter(|l| l.contains("MPI")).collect();
    assert_eq!(
        refusal,
        ["tau_metric_proxy_run: warning: MPI profiling disabled: cannot tell which MPI sh uses: it is not linked to \
          Open MPI or MPICH, and its launcher set PMI_* variables only, which Slurm's srun --mpi=pmi2 sets for \
          either (no OMPI_*, HYDRA_* or MPIR_CVAR_*)"],
        "{out}"
    );
    // The program's own links decide: no refusal, the right shim.
    for mpi in [OPENMPI, MPICH] {
        let shim = mpi.shim();
        let prog = mpi.program("mpi_vfork_exit");
        let out = launcher(&[prog.as_os_str(), "1".as_ref()]);
        out.assert_success();
        let err = out.stderr();
        let want = format!("preloading {}", shim.canonicalize().unwrap().display());
        assert!(err.lines().any(|l| l.contains("(linked to its MPI library)") && l.ends_with(&want)), "{out}");
        assert!(!err.contains("profiling disabled"), "{out}");
    }
}
