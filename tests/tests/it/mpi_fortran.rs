//! The PMPI shim and Fortran, under real `mpirun` and gfortran, Open MPI
//! and MPICH: the same program through `include 'mpif.h'`, `use mpi` and
//! `use mpi_f08` counted exactly (calls and bytes, in the C functions'
//! series) with the output and status of the uninstrumented run; a program
//! calling MPI from both Fortran and C counted once per call; Open MPI's
//! persistent collectives (`MPIX_*_init`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::time::Duration;

use crate::util::{bin, cmd, mpi_test, serial, wait_for, Mpi, Proxy, TempDir, MPICH, OPENMPI};

/// The proxy's `mpi_hits_total` and `mpi_size_total` series.
fn counts(p: &Proxy) -> BTreeMap<String, f64> {
    p.values().into_iter().filter(|(k, _)| k.starts_with("mpi_hits_total") || k.starts_with("mpi_size_total")).collect()
}

/// Waits until the proxy holds `want`, then compares, showing the difference.
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

/// `(function, hits, bytes)` summed into the proxy's keys.
fn series(calls: impl IntoIterator<Item = (&'static str, u64, Option<u64>)>) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = BTreeMap::new();
    for (f, hits, bytes) in calls {
        *m.entry(format!("mpi_hits_total{{function=\"{f}\"}}")).or_default() += hits as f64;
        if let Some(b) = bytes {
            *m.entry(format!("mpi_size_total{{function=\"{f}\"}}")).or_default() += b as f64;
        }
    }
    m
}

/// Every call and byte `tests/fortran/mpi_fortran.F90` makes on 4 ranks,
/// whichever binding it is built with.
fn expected() -> BTreeMap<String, f64> {
    series((0..4u64).flat_map(|r| {
        let root = r == 0;
        [
            ("MPI_Init", 1, None),
            ("MPI_Comm_rank", 1, None),
            ("MPI_Comm_size", 1, None),
            ("MPI_Send", 1, Some(20)),
            ("MPI_Recv", 1, Some(20)),
            ("MPI_Irecv", 2, Some(12 + 16)),
            ("MPI_Isend", 2, Some(12 + 16)),
            ("MPI_Waitall", 1, None),
            ("MPI_Wait", 2, None),
            ("MPI_Sendrecv", 1, Some(16 + 16)),
            ("MPI_Bcast", 1, Some(32)),
            // 4 doubles each way, then in place (received only), then one
            // integer each way on the duplicated half communicator.
            ("MPI_Allreduce", 3, Some(64 + 32 + 8)),
            ("MPI_Reduce", 1, Some(if root { 32 } else { 16 })),
            // Rank r sends r + 1 integers; the root receives 1 + 2 + 3 + 4.
            ("MPI_Gatherv", 1, Some((r + 1) * 4 + if root { 40 } else { 0 })),
            ("MPI_Allgather", 1, Some(8 * 4)),
            ("MPI_Barrier", 2, None),
            ("MPI_Comm_split", 1, None),
            ("MPI_Comm_dup", 1, None),
            ("MPI_Comm_free", 2, None),
            ("MPI_Win_create", 1, None),
            ("MPI_Win_fence", 3, None),
            ("MPI_Put", 1, Some(8)),
            ("MPI_Get", 1, Some(12)),
            ("MPI_Win_free", 1, None),
            ("MPI_File_open", 1, None),
            ("MPI_File_write_at", 1, Some(16)),
            ("MPI_File_read_at", 1, Some(16)),
            ("MPI_File_close", 1, None),
            ("MPI_Finalize", 1, None),
        ]
    }))
}

/// The program built for one binding, run bare then instrumented: same
/// output and status, every call and byte counted.
fn binding_counted_exactly(mpi: Mpi, flags: &[&str]) {
    let prog = mpi.fortran("mpi_fortran", flags, &[]);
    let io = TempDir::new("mpi-fortran-io");
    let args = [prog.as_os_str(), io.path().as_os_str()];
    let bare = mpi.mpirun(4, None, &args).run();
    bare.assert_success().assert_stdout("mpi_fortran: 4 ranks, checksum 7437\n");
    let p = Proxy::start();
    let out = mpi.mpirun(4, Some(&p.socket), &args).run();
    out.assert_success().assert_stdout(&bare.stdout()).assert_stderr("");
    assert_counts(&p, &expected());
}

mpi_test! {
    fn openmpi_fortran_mpif_h_counted_exactly, mpich_fortran_mpif_h_counted_exactly(mpi) {
        binding_counted_exactly(mpi, &[]);
    }
}

mpi_test! {
    fn openmpi_fortran_use_mpi_counted_exactly, mpich_fortran_use_mpi_counted_exactly(mpi) {
        binding_counted_exactly(mpi, &["-DUSE_MPI"]);
    }
}

mpi_test! {
    fn openmpi_fortran_use_mpi_f08_counted_exactly, mpich_fortran_use_mpi_f08_counted_exactly(mpi) {
        binding_counted_exactly(mpi, &["-DUSE_F08"]);
    }
}

mpi_test! {
    /// MPICH's `mpif.h` routines call the C `MPI_*` functions, Open MPI's
    /// call `PMPI_*`: either way a call is counted once, and C calls of the
    /// same program count in the same series.
    fn openmpi_fortran_and_c_calls_counted_once, mpich_fortran_and_c_calls_counted_once(mpi) {
        let p = Proxy::start();
        let prog = mpi.fortran("mpi_mixed", &[], &["mpi_mixed_part"]);
        mpi.mpirun(2, Some(&p.socket), &[prog.as_os_str()]).run().assert_success().assert_stdout("mpi_mixed: 2 ranks\n");
        let want = series((0..2).flat_map(|_| {
            [
                ("MPI_Init", 1, None),
                ("MPI_Comm_rank", 1, None),
                // One integer each way from Fortran, 2 doubles each way from C.
                ("MPI_Allreduce", 2, Some(8 + 32)),
                ("MPI_Barrier", 2, None),
                ("MPI_Finalize", 1, None),
            ]
        }));
        assert_counts(&p, &want);
    }
}

/// Open MPI 4.1's persistent collectives are `MPIX_*_init` (mpi-ext.h):
/// counted under their own name, bytes by the base collective's rule, once
/// when the request is made (as persistent requests are); `MPI_Start` and
/// `MPI_Wait` count calls only.
#[test]
fn openmpi_mpix_persistent_allreduce_is_counted_at_init() {
    let _serial = serial();
    OPENMPI.shim();
    let p = Proxy::start();
    let prog = OPENMPI.program("mpi_persistent_coll");
    let args: [&OsStr; 1] = [prog.as_os_str()];
    OPENMPI.mpirun(2, Some(&p.socket), &args).run().assert_success().assert_stdout("mpi_persistent_coll: 8\n");
    let want = series((0..2).flat_map(|_| {
        [
            ("MPI_Init", 1, None),
            ("MPI_Comm_rank", 1, None),
            ("MPIX_Allreduce_init", 1, Some(16 + 16)),
            ("MPI_Start", 3, None),
            ("MPI_Wait", 3, None),
            ("MPI_Request_free", 1, None),
            ("MPI_Finalize", 1, None),
        ]
    }));
    assert_counts(&p, &want);
}

/// MPICH binds `use mpi_f08` calls with `INTEGER(MPI_COUNT_KIND)` counts
/// to its `_large_` entry points, which count under the C `_c` functions,
/// their counts read as `MPI_Count` (Open MPI 4.1 has no such form).
#[test]
fn mpich_fortran_large_counts_count_under_the_c_functions() {
    let _serial = serial();
    MPICH.shim();
    let p = Proxy::start();
    let prog = MPICH.fortran("mpi_large_count", &[], &[]);
    MPICH.mpirun(2, Some(&p.socket), &[prog.as_os_str()]).run().assert_success().assert_stdout("mpi_large_count: 20\n");
    let want = series([
        ("MPI_Init", 2, None),
        ("MPI_Comm_rank", 2, None),
        ("MPI_Send_c", 1, Some(12)),
        ("MPI_Recv_c", 1, Some(12)),
        // 4 integers in place: received only, on each rank.
        ("MPI_Allreduce_c", 2, Some(2 * 16)),
        ("MPI_Finalize", 2, None),
    ]);
    assert_counts(&p, &want);
}

/// A program with MPICH linked in statically (`libmpich.a`) binds its MPI
/// calls inside itself: `-m` says so in one line per rank, preloads
/// nothing, and the program runs as without the launcher.
#[test]
fn mpich_statically_linked_program_is_announced_not_counted() {
    let _serial = serial();
    MPICH.shim();
    let p = Proxy::start();
    // libmpich.a and the shared libraries it needs on Debian 12.
    let libs = ["-Wl,-Bstatic", "-lmpich", "-Wl,-Bdynamic", "-lpthread", "-lhwloc", "-lucp", "-lucs"];
    let prog = MPICH.build("mpi_hello", "mpicc.mpich", &libs);
    let bare = MPICH.mpirun(2, None, &[prog.as_os_str()]).run();
    bare.assert_success().assert_stdout("mpi_hello: rank 0\n");
    let out = MPICH.mpirun(2, Some(&p.socket), &[prog.as_os_str()]).run();
    out.assert_success().assert_stdout(&bare.stdout());
    let line = format!(
        "tau_metric_proxy_run: warning: MPI profiling disabled: {} defines MPI_Init itself (MPI linked statically \
         into it): its MPI calls cannot be intercepted",
        prog.display()
    );
    out.assert_stderr(&format!("{line}\n{line}\n"));
    let mpi_series: Vec<String> = p.values().into_keys().filter(|k| k.starts_with("mpi_")).collect();
    assert!(mpi_series.is_empty(), "{mpi_series:?}");
}

/// A shim built where the Fortran MPI libraries were not found lists
/// none: run through it (a copy of the launcher beside a copy of the shim
/// whose list is blanked), an `mpi_f08` program gets one line saying its
/// Fortran calls are not counted, and runs as it would.
#[test]
fn openmpi_fortran_binding_without_wrappers_is_announced() {
    let _serial = serial();
    let p = Proxy::start();
    let dir = TempDir::new("mpi-no-fortran");
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    let launcher = dir.join("tau_metric_proxy_run");
    std::fs::copy(bin("tau_metric_proxy_run"), &launcher).unwrap();
    let mut shim = std::fs::read(OPENMPI.shim()).unwrap();
    let list = b"libmpi_usempif08 libmpi_usempi_ignore_tkr libmpi_mpifh\0";
    let at = shim.windows(list.len()).position(|w| w == list).expect("the shim lists its Fortran libraries");
    shim[at] = 0;
    std::fs::write(dir.join("lib").join("libtau_pmpi_openmpi.so"), &shim).unwrap();
    let prog = OPENMPI.fortran("mpi_fortran", &["-DUSE_F08"], &[]);
    let io = TempDir::new("mpi-fortran-io");
    let out = cmd("mpirun.openmpi")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["--oversubscribe", "-np", "4"])
        .arg(&launcher)
        .arg("-u")
        .arg(&p.socket)
        .args(["-m", "--"])
        .arg(&prog)
        .arg(io.path())
        .run();
    out.assert_success().assert_stdout("mpi_fortran: 4 ranks, checksum 7437\n");
    let line = format!(
        "tau_metric_proxy_run: warning: {} calls MPI from Fortran through libmpi_usempif08.so.40, which the Open \
         MPI shim has no wrappers for: those calls are not counted\n",
        prog.display()
    );
    out.assert_stderr(&line.repeat(4));
}
