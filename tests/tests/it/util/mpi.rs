//! The two MPI implementations Debian installs, their shims and their
//! `mpirun`, and [`mpi_test!`], which writes a test once for both.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::{bin, c_source, cmd, TempDir, TestCommand};

/// One MPI implementation as Debian installs it.
#[derive(Clone, Copy)]
pub struct Mpi {
    pub name: &'static str,
}

pub const OPENMPI: Mpi = Mpi { name: "openmpi" };
pub const MPICH: Mpi = Mpi { name: "mpich" };

/// The MPI runs share 2 cores: one at a time keeps each run short.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes an MPI test once and expands to two tests, the first named
/// test for Open MPI, the second for MPICH. Each takes the [`serial`]
/// lock and checks that its implementation's shim is built, then runs the
/// body with `mpi` bound to [`OPENMPI`] or [`MPICH`]:
///
/// ```text
/// mpi_test! {
///     /// What both tests check.
///     fn openmpi_counts_match, mpich_counts_match(mpi) {
///         let out = mpi.mpirun(2, None, &[]).run();
///     }
/// }
/// ```
macro_rules! mpi_test {
    ($(#[$meta:meta])* fn $openmpi:ident, $mpich:ident($mpi:ident) $body:block) => {
        $(#[$meta])*
        #[test]
        fn $openmpi() {
            let $mpi = $crate::util::OPENMPI;
            let _serial = $crate::util::serial();
            $mpi.shim();
            $body
        }

        $(#[$meta])*
        #[test]
        fn $mpich() {
            let $mpi = $crate::util::MPICH;
            let _serial = $crate::util::serial();
            $mpi.shim();
            $body
        }
    };
}
pub(crate) use mpi_test;

impl Mpi {
    /// `libtau_pmpi_<impl>.so`, next to the workspace binaries.
    pub fn shim(self) -> PathBuf {
        let launcher = bin("tau_metric_proxy_run");
        let shim = launcher.parent().unwrap().join("lib").join(format!("libtau_pmpi_{}.so", self.name));
        assert!(shim.is_file(), "{} is missing: run `cargo xtask test`, which builds the shims", shim.display());
        shim
    }

    /// `tests/c/<name>.c` compiled with this implementation's mpicc (once per test run).
    pub fn program(self, name: &str) -> PathBuf {
        self.build(name, &format!("mpicc.{}", self.name), &[])
    }

    /// `tests/c/<name>.c` built with `cc` and `flags` (once per test run;
    /// a build with other flags or another compiler is another file, so a
    /// static `mpi_hello` never stands in for the dynamic one).
    pub fn build(self, name: &str, cc: &str, flags: &[&str]) -> PathBuf {
        let plain = cc == format!("mpicc.{}", self.name) && flags.is_empty();
        let variant = if plain {
            String::new()
        } else {
            format!("-{:016x}", fnv1a(&[cc].iter().chain(flags).copied().collect::<Vec<_>>().join(" ")))
        };
        let key = format!("{name}_{}{variant}{}", self.name, if flags.contains(&"-shared") { ".so" } else { "" });
        let mut all = vec!["-O1", "-Wall", "-Wno-stringop-overflow", "-Wno-stringop-overread"];
        all.extend(flags);
        built(&key, cc, &all, &[c_source(name)])
    }

    /// `tests/fortran/<name>.F90` compiled with this implementation's
    /// `mpif90` and `flags` (`-DUSE_MPI`, `-DUSE_F08`: the binding), linked
    /// with the C files `tests/c/<c_parts>.c` (once per test run).
    pub fn fortran(self, name: &str, flags: &[&str], c_parts: &[&str]) -> PathBuf {
        let tag: String = flags.iter().map(|f| f.trim_start_matches('-').to_ascii_lowercase()).collect();
        let key = format!("{name}{tag}_{}", self.name);
        let mut sources = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("fortran").join(format!("{name}.F90"))];
        let objects: Vec<PathBuf> = c_parts
            .iter()
            .map(|c| {
                built(&format!("{c}_{}.o", self.name), &format!("mpicc.{}", self.name), &["-O1", "-c"], &[c_source(c)])
            })
            .collect();
        sources.extend(objects);
        // gfortran 12 refuses mpif.h calls passing different types to one
        // routine unless told, as MPICH's wrapper (not Open MPI's) does.
        let mut all = vec!["-O1", "-fallow-argument-mismatch", "-w"];
        all.extend(flags);
        built(&key, &format!("mpif90.{}", self.name), &all, &sources)
    }

    /// `mpirun` with `np` ranks running `args`, through the launcher with
    /// `-m` when `socket` is given.
    pub fn mpirun(self, np: usize, socket: Option<&Path>, args: &[&OsStr]) -> TestCommand {
        let mut cmd = cmd(format!("mpirun.{}", self.name));
        if self.name == "openmpi" {
            // Root in containers; more ranks than cores.
            cmd = cmd
                .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
                .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
                .arg("--oversubscribe");
        }
        cmd = cmd.arg("-np").arg(np.to_string());
        if let Some(socket) = socket {
            cmd = cmd.arg(bin("tau_metric_proxy_run")).arg("-u").arg(socket).args(["-m", "--"]);
        }
        cmd.args(args)
    }

    /// `mpirun` with `np` ranks running `args` through the launcher with
    /// `-m` and `-j JOB`.
    pub fn mpirun_in_job(self, np: usize, socket: &Path, job: &str, args: &[&OsStr]) -> TestCommand {
        let launcher = bin("tau_metric_proxy_run");
        let mut all: Vec<&OsStr> = vec![launcher.as_os_str(), "-u".as_ref(), socket.as_os_str(), "-j".as_ref()];
        all.extend([OsStr::new(job), "-m".as_ref(), "--".as_ref()]);
        all.extend(args);
        self.mpirun(np, None, &all)
    }
}

/// A stable 64-bit hash of `text` (FNV-1a), naming a build's variant.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// `sources` built by `cc` with `flags` into a file named `key` of the
/// programs' directory, once per test run.
fn built(key: &str, cc: &str, flags: &[&str], sources: &[PathBuf]) -> PathBuf {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let dir = DIR.get_or_init(|| TempDir::new("mpi-programs"));
    let mut done = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = done.get(key) {
        return p.clone();
    }
    let out = dir.join(key);
    // Flags after the sources: libraries given there resolve their symbols.
    cmd(cc).arg("-o").arg(&out).args(sources).args(flags).run().assert_success();
    done.insert(key.to_owned(), out.clone());
    out
}
