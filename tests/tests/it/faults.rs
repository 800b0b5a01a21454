//! Faults: the daemon stopped or killed under load. Collectors never block
//! for long, and once the daemon is back nothing counted is lost. With the
//! real collectors (the PMPI shim under `mpirun`, Open MPI and MPICH, and
//! `tau_strace`): a daemon killed and restarted mid-run, an instrumented
//! program killed, programs that fork and exec repeatedly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use client::{PushConfig, PushState, Pusher};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use protocol::Desc;

use crate::util::{cmd, compile, lines_in, mpi_test, wait_for, Proxy, TempDir};

/// Runs `threads` collectors pushing every 20 ms for `run_for`, each adding
/// its index + 1 per push; returns (pushes per thread, longest flush).
fn push_for(p: &Proxy, threads: u64, run_for: Duration) -> std::thread::JoinHandle<(Vec<u64>, Duration)> {
    let socket = p.socket.clone();
    std::thread::spawn(move || {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    let mut pusher = Pusher::new(PushConfig::new(socket, "fault"));
                    let id = pusher.register(Desc::counter("fault_total", &[], "Fault test counter"));
                    let (start, mut pushes, mut longest) = (Instant::now(), 0u64, Duration::ZERO);
                    while start.elapsed() < run_for {
                        pusher.add(id, t + 1);
                        pushes += 1;
                        let t0 = Instant::now();
                        pusher.flush();
                        longest = longest.max(t0.elapsed());
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    // Keep trying until the daemon has it all.
                    let t0 = Instant::now();
                    while pusher.flush() != PushState::Sent || !pusher.is_connected() {
                        assert!(t0.elapsed() < Duration::from_secs(30), "daemon never came back");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    (pushes, longest)
                })
            })
            .collect();
        let mut longest = Duration::ZERO;
        let pushes = workers
            .into_iter()
            .map(|w| {
                let (n, l) = w.join().unwrap();
                longest = longest.max(l);
                n
            })
            .collect();
        (pushes, longest)
    })
}

fn expected(pushes: &[u64]) -> f64 {
    pushes.iter().enumerate().map(|(t, n)| (t as u64 + 1) * n).sum::<u64>() as f64
}

#[test]
fn a_daemon_stopped_for_ten_seconds_blocks_no_collector_and_loses_nothing() {
    let p = Proxy::start();
    let load = push_for(&p, 4, Duration::from_secs(12));
    std::thread::sleep(Duration::from_millis(500));
    let pid = Pid::from_raw(p.pid());
    kill(pid, Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    kill(pid, Signal::SIGCONT).unwrap();
    let (pushes, longest) = load.join().unwrap();
    let want = expected(&pushes);
    assert_eq!(p.wait_value("fault_total", want), want);
    println!(
        "SIGSTOP 10 s: {} pushes, longest flush {:.0} ms, total exact",
        pushes.iter().sum::<u64>(),
        longest.as_secs_f64() * 1e3
    );
    // A flush is bounded by a few I/O timeouts (200 ms each), never the 10 s stop.
    assert!(longest < Duration::from_secs(3), "a flush blocked for {longest:?}");
}

#[test]
fn a_daemon_killed_and_restarted_under_load_ends_with_exact_totals() {
    let p = Proxy::start();
    let load = push_for(&p, 4, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(1));
    let p = p.restart(); // SIGKILL, then a new daemon on the same socket
    let (pushes, longest) = load.join().unwrap();
    let want = expected(&pushes);
    assert_eq!(p.wait_value("fault_total", want), want);
    println!(
        "SIGKILL + restart: {} pushes, longest flush {:.0} ms, total exact",
        pushes.iter().sum::<u64>(),
        longest.as_secs_f64() * 1e3
    );
}

// ------------------------------------------------------------ real collectors

/// A hang detector, not a timing: every run here takes seconds. Commands
/// run to their end with `.spawn().finish_within(HANG)`, killed past it.
const HANG: Duration = Duration::from_secs(120);

/// Program arguments of mixed types, as `mpirun` takes them.
fn args<'a>(list: &'a [&'a dyn AsRef<std::ffi::OsStr>]) -> Vec<&'a std::ffi::OsStr> {
    list.iter().map(|a| a.as_ref()).collect()
}

/// The proxy's series whose family starts with `prefix`.
fn series(p: &Proxy, prefix: &str) -> BTreeMap<String, f64> {
    p.values().into_iter().filter(|(k, _)| k.starts_with(prefix)).collect()
}

/// Waits until the proxy's `prefix` series equal `want`, then compares
/// them, so a mismatch shows every value.
fn assert_series(p: &Proxy, prefix: &str, want: &[(&str, f64)]) {
    let want: BTreeMap<String, f64> = want.iter().map(|(k, v)| (format!("{prefix}{k}"), *v)).collect();
    let mut got = BTreeMap::new();
    wait_for(Duration::from_secs(15), || {
        got = series(p, prefix);
        want.iter().all(|(k, v)| got.get(k) == Some(v)).then_some(())
    });
    let got: BTreeMap<String, f64> = got.into_iter().filter(|(k, _)| want.contains_key(k)).collect();
    assert_eq!(got, want);
}

const STEPS: u64 = 40;
const STEP_MS: u64 = 50;

mpi_test! {
    /// An MPI job of 2 ranks making [`STEPS`] `MPI_Allreduce`, [`STEP_MS`]
    /// apart; the daemon is SIGKILLed and restarted once both ranks have
    /// pushed some: the job ends normally and the totals are exact.
    fn openmpi_job_survives_a_daemon_killed_and_restarted_with_exact_totals,
        mpich_job_survives_a_daemon_killed_and_restarted_with_exact_totals(mpi) {
        let prog = mpi.program("fault_mpi_steps");
        let (steps, ms) = (STEPS.to_string(), STEP_MS.to_string());
        let bare_dir = TempDir::new("fault-mpi-bare");
        let bare = mpi.mpirun(2, None, &args(&[&prog, &steps, &ms, &bare_dir.path()])).spawn().finish_within(HANG);
        bare.assert_success();
        let bare_took = bare.took();

        let p = Proxy::start();
        let dir = TempDir::new("fault-mpi");
        let child = mpi.mpirun(2, Some(&p.socket), &args(&[&prog, &steps, &ms, &dir.path()])).spawn();
        // Both ranks have pushed steps: the restart breaks live connections.
        let hits = "mpi_hits_total{function=\"MPI_Allreduce\"}";
        let pushed = wait_for(HANG, || (p.value(hits) >= 10.0).then_some(()));
        assert!(pushed.is_some(), "no MPI_Allreduce pushed; daemon log:\n{}", p.log());
        let p = p.restart();
        let out = child.finish_within(HANG);
        out.assert_success().assert_stdout(&format!("fault_mpi_steps: {STEPS} steps on 2 ranks\n"));
        let took = out.took();
        let n = 2.0 * STEPS as f64;
        assert_series(
            &p,
            "mpi_hits_total",
            &[
                ("{function=\"MPI_Init\"}", 2.0),
                ("{function=\"MPI_Comm_rank\"}", 2.0),
                ("{function=\"MPI_Comm_size\"}", 2.0),
                ("{function=\"MPI_Allreduce\"}", n),
                ("{function=\"MPI_Finalize\"}", 2.0),
            ],
        );
        // One int sent and one received per call.
        assert_series(&p, "mpi_size_total", &[("{function=\"MPI_Allreduce\"}", n * 8.0)]);
        println!(
            "{}: daemon SIGKILLed and restarted mid-job: job ran {:.2} s (uninstrumented {:.2} s, {:+.0} ms), \
             status 0, totals exact ({n} MPI_Allreduce)",
            mpi.name,
            took.as_secs_f64(),
            bare_took.as_secs_f64(),
            (took.as_secs_f64() - bare_took.as_secs_f64()) * 1e3
        );
    }
}

#[test]
fn traced_program_survives_a_daemon_killed_and_restarted_with_exact_totals() {
    let dir = TempDir::new("fault-strace");
    let prog = compile(&dir, "fault_write_steps", false);
    let (steps, ms) = (STEPS.to_string(), STEP_MS.to_string());
    let run_args = [steps.as_str(), ms.as_str(), "100", "/dev/null"];
    let bare = cmd(&prog).args(run_args).spawn().finish_within(HANG);
    bare.assert_exit(4);
    let bare_took = bare.took();

    let p = Proxy::start();
    let child = p.tool("tau_metric_proxy_run").args(["-s", "--"]).arg(&prog).args(run_args).spawn();
    let writes = "strace_hits_total{scall=\"write\"}";
    let pushed = wait_for(HANG, || (p.value(writes) >= 5.0).then_some(()));
    assert!(pushed.is_some(), "no write pushed; daemon log:\n{}", p.log());
    let p = p.restart();
    let out = child.finish_within(HANG);
    out.assert_exit(4).assert_stderr("");
    let took = out.took();
    let n = STEPS as f64;
    assert_series(
        &p,
        "strace_",
        &[
            ("hits_total{scall=\"write\"}", n),
            ("size_total{scall=\"write\"}", n * 100.0),
            ("hits_total{scall=\"clock_nanosleep\"}", n),
        ],
    );
    println!(
        "tau_strace: daemon SIGKILLed and restarted mid-run: program ran {:.2} s (untraced {:.2} s, {:+.0} ms), \
         status 4, totals exact ({n} writes)",
        took.as_secs_f64(),
        bare_took.as_secs_f64(),
        (took.as_secs_f64() - bare_took.as_secs_f64()) * 1e3
    );
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock the C programs stamp with.
fn monotonic_ns() -> i64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    t.tv_sec() * 1_000_000_000 + t.tv_nsec()
}

const PUSH_MS: i64 = 200;
/// Time the push thread may need beyond its period to wake up and push
/// on a loaded machine; the steps that recent are not required.
const SCHED_SLACK_MS: i64 = 100;

mpi_test! {
    /// Both ranks of a job making `MPI_Allreduce` every 20 ms are SIGKILLed:
    /// the proxy has every step done up to one push period before the kill,
    /// and none that was not done.
    fn openmpi_killed_ranks_lose_at_most_one_push_period, mpich_killed_ranks_lose_at_most_one_push_period(mpi) {
        let prog = mpi.program("fault_mpi_steps");
        let p = Proxy::start();
        let dir = TempDir::new("fault-mpi-kill");
        let child = mpi
            .mpirun(2, Some(&p.socket), &args(&[&prog, &"0", &"20", &dir.path()]))
            .env("TAU_METRIC_PROXY_PUSH_MS", PUSH_MS.to_string())
            .spawn();
        let progress = [dir.join("progress.0"), dir.join("progress.1")];
        let going = wait_for(HANG, || progress.iter().all(|f| lines_in(f) >= 40).then_some(()));
        assert!(going.is_some(), "the ranks made no progress");
        let pids: Vec<Pid> = (0..2)
            .map(|r| {
                let pid = std::fs::read_to_string(dir.join(&format!("pid.{r}"))).expect("pid file");
                Pid::from_raw(pid.trim().parse().expect("a pid"))
            })
            .collect();
        let killed_at = monotonic_ns();
        for pid in &pids {
            kill(*pid, Signal::SIGKILL).expect("SIGKILL a rank");
        }
        // mpirun reports the killed ranks.
        child.finish_within(HANG).assert_failure();
        // Per rank: steps done, and steps done by one push period before the kill.
        let due_by = killed_at - (PUSH_MS + SCHED_SLACK_MS) * 1_000_000;
        let (mut done, mut due) = (0u64, 0u64);
        for f in &progress {
            for line in std::fs::read_to_string(f).expect("progress").lines() {
                let ns: i64 = line.split(' ').nth(1).and_then(|n| n.parse().ok()).expect("step time stamp");
                done += 1;
                due += u64::from(ns <= due_by);
            }
        }
        let hits = "mpi_hits_total{function=\"MPI_Allreduce\"}";
        // What the ranks sent before dying is read by the daemon shortly after.
        let mut got = 0.0;
        wait_for(Duration::from_secs(10), || {
            got = p.value(hits);
            (got >= due as f64).then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
        got = p.value(hits);
        println!(
            "{}: 2 ranks SIGKILLed after {done} steps (20 ms each): proxy has {got}, lost {} ({:.0} ms of steps), \
             push period {PUSH_MS} ms",
            mpi.name,
            done as f64 - got,
            (done as f64 - got) / 2.0 * 20.0
        );
        assert!(got >= due as f64, "lost more than one push period: {got} < {due} (done {done})");
        // A step is counted when the call returns, just before its line is
        // written: at most one per rank is counted and not yet in the file.
        assert!(got <= (done + 2) as f64, "counted calls that were never made: {got} > {done}");
    }
}

/// `/proc/PID/task/PID/children`: the direct children of a process.
fn children(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn traced_program_killed_is_counted_exactly() {
    let dir = TempDir::new("fault-strace-kill");
    let prog = compile(&dir, "fault_write_steps", false);
    let progress = dir.join("progress");
    let p = Proxy::start();
    // No periodic push: what the proxy gets is pushed after the kill.
    let tracer = p
        .tool("tau_strace")
        .args(["--interval", "600000", "--"])
        .arg(&prog)
        .args(["0", "20", "1"])
        .arg(&progress)
        .spawn();
    let size = || std::fs::metadata(&progress).map(|m| m.len()).unwrap_or(0);
    assert!(wait_for(HANG, || (size() >= 20).then_some(())).is_some(), "the program made no progress");
    let tracee = children(tracer.id());
    assert_eq!(tracee.len(), 1, "one traced child: {tracee:?}");
    kill(Pid::from_raw(tracee[0]), Signal::SIGKILL).expect("SIGKILL the traced program");
    // The command's fate is relayed.
    tracer.finish_within(HANG).assert_exit(128 + 9);
    // One byte per write: the file holds exactly the writes made.
    let n = size() as f64;
    assert_series(&p, "strace_", &[("hits_total{scall=\"write\"}", n), ("size_total{scall=\"write\"}", n)]);
    println!("tau_strace: traced program SIGKILLed after {n} writes: all {n} counted, none lost");
}

// ------------------------------------------------------------ fork and exec

#[test]
fn fork_and_exec_repeatedly_traced_counted_exactly() {
    let dir = TempDir::new("fault-fork-exec");
    let prog = compile(&dir, "fault_fork_exec", false);
    let p = Proxy::start();
    // A fixed PATH: execvp and execlp try each directory in turn.
    let cmd =
        p.tool("tau_metric_proxy_run").args(["-s", "--"]).arg(&prog).args(["16", "50"]).env("PATH", "/usr/bin:/bin");
    let out = cmd.spawn().finish_within(HANG);
    out.assert_exit(6).assert_stderr("");
    let took = out.took();
    // 16 children, 50 getppid each; every one execs /bin/true, 2 of them
    // through fexecve (execveat), the others through execve.
    assert_series(
        &p,
        "strace_hits_total",
        &[
            ("{scall=\"getppid\"}", 16.0 * 50.0),
            ("{scall=\"clone\"}", 16.0),
            ("{scall=\"wait4\"}", 16.0),
            ("{scall=\"execve\"}", 1.0 + 14.0),
            ("{scall=\"execveat\"}", 2.0),
        ],
    );
    println!("tau_strace: 16 fork + exec rounds counted exactly in {:.2} s", took.as_secs_f64());
}

mpi_test! {
    /// 16 children per rank call `MPI_Initialized` 100 times, then exec
    /// `/bin/true` through each exec function in turn; after `MPI_Finalize`
    /// the rank makes 100 `MPI_Finalized`, an exec that fails, 100 more, then
    /// execs `echo`. These counts are only ever pushed by the shim's exec
    /// hook: a forked child has no push thread and the exit hook never runs in
    /// a replaced image.
    fn openmpi_fork_and_exec_repeatedly_counted_exactly, mpich_fork_and_exec_repeatedly_counted_exactly(mpi) {
        let prog = mpi.program("fault_mpi_exec");
        let p = Proxy::start();
        let cmd = mpi.mpirun(2, Some(&p.socket), &args(&[&prog, &"16", &"100"]));
        // No periodic push could deliver them either.
        let out = cmd.env("TAU_METRIC_PROXY_PUSH_MS", "600000").spawn().finish_within(HANG);
        out.assert_success().assert_stdout(&"fault_mpi_exec: done\n".repeat(2));
        assert_series(
            &p,
            "mpi_hits_total",
            &[
                ("{function=\"MPI_Init\"}", 2.0),
                ("{function=\"MPI_Comm_rank\"}", 2.0 * 100.0),
                ("{function=\"MPI_Initialized\"}", 2.0 * 16.0 * 100.0),
                ("{function=\"MPI_Finalize\"}", 2.0),
                // The failed exec pushed the first 100: the next push adds only
                // what came after.
                ("{function=\"MPI_Finalized\"}", 2.0 * 200.0),
            ],
        );
        println!("{}: 2 ranks x 16 fork + exec (8 exec functions) counted exactly", mpi.name);
    }
}

const FORK_ROUNDS: u64 = 100;

mpi_test! {
    /// Both ranks of a job fork [`FORK_ROUNDS`] children, 10 ms apart, while
    /// the daemon is SIGSTOPped and the shim tries to push every 10 ms: the
    /// push thread spends much of that time waiting on the stopped daemon,
    /// and no fork may wait for it. After SIGCONT the totals are exact.
    fn openmpi_forks_never_wait_for_a_stopped_daemon, mpich_forks_never_wait_for_a_stopped_daemon(mpi) {
        let prog = mpi.program("fault_mpi_fork");
        let p = Proxy::start();
        let pid = Pid::from_raw(p.pid());
        kill(pid, Signal::SIGSTOP).unwrap();
        let dir = TempDir::new("fault-mpi-fork");
        let rounds = FORK_ROUNDS.to_string();
        let cmd = mpi.mpirun(2, Some(&p.socket), &args(&[&prog, &rounds, &"10", &dir.path()]));
        let child = cmd.env("TAU_METRIC_PROXY_PUSH_MS", "10").spawn();
        let forked = [dir.join("forked.0"), dir.join("forked.1")];
        let done = wait_for(HANG, || forked.iter().all(|f| f.is_file()).then_some(()));
        kill(pid, Signal::SIGCONT).unwrap();
        std::fs::write(dir.join("go"), "").unwrap();
        let out = child.finish_within(HANG);
        if done.is_none() {
            out.fail("the ranks never finished forking");
        }
        out.assert_success().assert_stdout(&format!("fault_mpi_fork: {FORK_ROUNDS} forks on 2 ranks\n"));
        let worst: Vec<Duration> = forked
            .iter()
            .map(|f| {
                let ns = std::fs::read_to_string(f).expect("forked file");
                Duration::from_nanos(ns.trim().parse().expect("nanoseconds"))
            })
            .collect();
        // Every call made while the daemon was stopped reaches it afterwards,
        // once: the children counted nothing.
        let n = FORK_ROUNDS as f64;
        assert_series(
            &p,
            "mpi_hits_total",
            &[
                ("{function=\"MPI_Init\"}", 2.0),
                ("{function=\"MPI_Comm_size\"}", 2.0),
                ("{function=\"MPI_Comm_rank\"}", 2.0 * n),
                ("{function=\"MPI_Barrier\"}", 2.0),
                ("{function=\"MPI_Finalize\"}", 2.0),
            ],
        );
        let longest = worst.iter().max().copied().unwrap_or_default();
        println!(
            "{}: 2 ranks x {FORK_ROUNDS} forks with the daemon stopped: longest fork {:.1} ms (per rank {:?}), \
             totals exact",
            mpi.name,
            longest.as_secs_f64() * 1e3,
            worst.iter().map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3)).collect::<Vec<_>>()
        );
        assert!(longest < FORK_BOUND, "a fork took {longest:?} with the daemon stopped");
    }
}

/// A generous bound that still tells the two apart: a fork here costs about
/// a millisecond, while one that waits for the push thread's I/O on the
/// stopped daemon waits out a 200 ms I/O timeout (this test measured 200 ms
/// with the shim that did).
const FORK_BOUND: Duration = Duration::from_millis(150);

mpi_test! {
    /// A vfork child that calls `exit()` runs the exit hooks in its parent's
    /// memory: the shim must leave the parent's counts and state alone. The
    /// parent's exec then pushes all of them, once, under its own identity.
    fn openmpi_vfork_child_calling_exit_leaves_the_parent_counting,
        mpich_vfork_child_calling_exit_leaves_the_parent_counting(mpi) {
        let shim = mpi.shim();
        let prog = mpi.program("mpi_vfork_exit");
        let p = Proxy::start();
        cmd(&prog)
            .arg("10")
            .env("LD_PRELOAD", &shim)
            .env("TAU_METRIC_PROXY", &p.socket)
            .env("PATH", "/usr/bin:/bin")
            .spawn()
            .finish_within(HANG)
            .assert_success()
            .assert_stdout("mpi_vfork_exit: done\n")
            .assert_stderr("");
        // Had the child pushed the first 10 and ended the parent's state, the
        // parent's exec would have pushed nothing more (or, starting over,
        // 20 more).
        assert_series(&p, "mpi_hits_total", &[("{function=\"MPI_Initialized\"}", 20.0)]);
    }
}
