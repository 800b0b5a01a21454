//! `-m`: chooses the PMPI shim matching the program's MPI and preloads it.
//!
//! The MPI implementation is read from the program's ELF `DT_NEEDED`
//! entries (then `ldd`, for libraries linked indirectly); for an
//! interpreter or a script (e.g. `python3` running mpi4py) it is read from
//! the environment the launching `mpirun` set (`OMPI_*` for Open MPI,
//! `HYDRA_*`/`MPIR_CVAR_*` for MPICH's hydra). `PMI_*` alone says nothing:
//! Slurm's `srun --mpi=pmi2` sets it for Open MPI jobs too, and the wrong
//! shim cannot forward a single call, so `-m` then refuses (the command
//! runs without MPI profiling). The shim is looked up next to the
//! launcher: `<exe_dir>/../lib/libtau_pmpi_<impl>.so` (installed layout)
//! then `<exe_dir>/lib/libtau_pmpi_<impl>.so` (build tree).
//!
//! When it knows the program cannot be counted, `-m` says so in one line:
//! a program that defines `MPI_Init` (or `PMPI_Init`, `mpi_init_`, ...)
//! itself has MPI linked statically, its calls bind inside it, and nothing
//! is preloaded; a program linked to a Fortran MPI library that the shim
//! has no wrappers for (the shim exports their list,
//! `tau_pmpi_fortran_libraries`) has its Fortran calls uncounted.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::elf::{defines_any, needed_libs, symbol_string};

/// An MPI implementation the shim is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mpi {
    OpenMpi,
    Mpich,
}

impl Mpi {
    /// The `<impl>` part of the shim's file name.
    fn tag(self) -> &'static str {
        match self {
            Mpi::OpenMpi => "openmpi",
            Mpi::Mpich => "mpich",
        }
    }

    fn display(self) -> &'static str {
        match self {
            Mpi::OpenMpi => "Open MPI",
            Mpi::Mpich => "MPICH",
        }
    }
}

/// Environment variable the shim reads to report what it does on stderr.
const SHIM_VERBOSE_ENV: &str = "TAU_PMPI_VERBOSE";

/// The variables to set on the child so that it runs with the right shim.
pub(crate) fn preload_env(command: &[OsString], verbose: bool) -> Result<Vec<(OsString, OsString)>, String> {
    let program = command.first().ok_or_else(|| "no command to run".to_owned())?;
    // Read for its links here (the spawn finds it again to run it): any regular file will do.
    let path = client::find_program(program, client::MustBe::File, None);
    if let Some(own) = path.as_deref().and_then(|p| defines_any(p, STATIC_MARKERS).ok().flatten()) {
        return Err(format!(
            "{} defines {own} itself (MPI linked statically into it): its MPI calls cannot be intercepted",
            Path::new(program).display()
        ));
    }
    let (mpi, how) = detect(path.as_deref(), program)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate tau_metric_proxy_run itself: {e}"))?;
    let exe_dir = exe.parent().unwrap_or(Path::new("/"));
    let shim = find_shim(exe_dir, mpi)?;
    if shim.as_os_str().as_bytes().iter().any(|b| matches!(b, b':' | b' ')) {
        return Err(format!(
            "the shim path {} contains a space or a colon, which LD_PRELOAD cannot hold",
            shim.display()
        ));
    }
    if verbose {
        crate::say(&format!("{} program ({how}): preloading {}", mpi.display(), shim.display()));
    }
    let needed = path.as_deref().and_then(|p| needed_libs(p).ok()).unwrap_or_default();
    let covered = symbol_string(&shim, FORTRAN_LIBRARIES_SYMBOL).ok().flatten().unwrap_or_default();
    if let Some(notice) = fortran_notice(program, &needed, &covered, mpi) {
        crate::say(&format!("warning: {notice}"));
    }
    let mut vars = vec![(OsString::from("LD_PRELOAD"), ld_preload(&shim, std::env::var_os("LD_PRELOAD").as_deref()))];
    if verbose {
        vars.push((SHIM_VERBOSE_ENV.into(), "1".into()));
    }
    Ok(vars)
}

/// Symbols that an MPI library defines: a program that defines one itself
/// has MPI linked in statically, and its calls bind inside it, out of
/// reach of a preloaded library.
const STATIC_MARKERS: &[&str] = &["MPI_Init", "PMPI_Init", "MPI_Init_thread", "mpi_init_", "MPI_INIT", "mpi_init_f08_"];

/// The shim's list of the Fortran MPI libraries it has wrappers for.
const FORTRAN_LIBRARIES_SYMBOL: &str = "tau_pmpi_fortran_libraries";

/// Libraries of the Fortran bindings of Open MPI (`libmpi_mpifh`,
/// `libmpi_usempif08`, ...) and MPICH (`libmpichfort`, older
/// `libmpifort`/`libfmpich`), by file name prefix.
const FORTRAN_BINDINGS: &[&str] = &["libmpi_mpifh", "libmpi_usempi", "libmpichfort", "libmpifort", "libfmpich"];

/// The one-line notice for a program linked to a Fortran MPI library the
/// shim has no wrappers for (`covered`: the shim's list, file names up to
/// `.so` separated by spaces), if any.
fn fortran_notice(program: &OsStr, needed: &[String], covered: &str, mpi: Mpi) -> Option<String> {
    let missing: Vec<&str> = needed
        .iter()
        .map(String::as_str)
        .filter(|l| FORTRAN_BINDINGS.iter().any(|b| l.starts_with(b)))
        .filter(|l| {
            let stem = l.split(".so").next().unwrap_or(l);
            !covered.split_whitespace().any(|c| c == stem)
        })
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "{} calls MPI from Fortran through {}, which the {} shim has no wrappers for: those calls are not counted",
        Path::new(program).display(),
        missing.join(" and "),
        mpi.display()
    ))
}

fn detect(path: Option<&Path>, program: &OsStr) -> Result<(Mpi, String), String> {
    decide(path.and_then(linked_mpi), mpi_from_env(std::env::vars_os()), program)
}

/// The MPI the program is linked to, directly or through another library.
fn linked_mpi(path: &Path) -> Option<(Mpi, &'static str)> {
    let libs = needed_libs(path).ok()?;
    if let Some(m) = mpi_from_libs(libs.iter().map(String::as_str)) {
        return Some((m, "linked to its MPI library"));
    }
    // Linked indirectly (through another library): ask the loader.
    let m = ldd_libs(path).and_then(|l| mpi_from_libs(l.iter().map(String::as_str)))?;
    Some((m, "linked to its MPI library through another library"))
}

/// The program's own links win; the launching environment is only
/// trusted when it names one implementation.
fn decide(linked: Option<(Mpi, &str)>, env: EnvMpi, program: &OsStr) -> Result<(Mpi, String), String> {
    if let Some((m, how)) = linked {
        return Ok((m, how.to_owned()));
    }
    let program = Path::new(program).display();
    match env {
        EnvMpi::Known(m) => Ok((m, "from the environment of the launching mpirun".to_owned())),
        EnvMpi::Ambiguous => Err(format!(
            "cannot tell which MPI {program} uses: it is not linked to Open MPI or MPICH, and its launcher set \
             PMI_* variables only, which Slurm's srun --mpi=pmi2 sets for either (no OMPI_*, HYDRA_* or MPIR_CVAR_*)"
        )),
        EnvMpi::Unknown => Err(format!(
            "cannot tell which MPI {program} uses: it is not linked to Open MPI or MPICH and it was not started by \
             their mpirun"
        )),
    }
}

/// What the launching environment says of the MPI implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvMpi {
    /// Variables only one implementation's launcher sets.
    Known(Mpi),
    /// Only `PMI_*`, which Slurm's PMI-2 plugin sets for any MPI.
    Ambiguous,
    /// No MPI launcher's variables.
    Unknown,
}

/// The MPI implementation named by a list of shared library names.
fn mpi_from_libs<'a>(libs: impl IntoIterator<Item = &'a str>) -> Option<Mpi> {
    for lib in libs {
        let file = lib.rsplit('/').next().unwrap_or(lib);
        if file.starts_with("libmpich") || file.starts_with("libmpifort.so") || file.starts_with("libmpicxx.so") {
            return Some(Mpi::Mpich);
        }
        // libmpi.so.40 and its Fortran/C++ companions (libmpi_mpifh, libmpi_cxx, ...).
        if file.starts_with("libmpi.so") || file.starts_with("libmpi_") || file.starts_with("libopen-rte.so") {
            return Some(Mpi::OpenMpi);
        }
    }
    None
}

/// The MPI implementation whose launcher started this process.
fn mpi_from_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> EnvMpi {
    let (mut hydra, mut pmi) = (false, false);
    for (k, _) in vars {
        let k = k.as_bytes();
        if k.starts_with(b"OMPI_") {
            return EnvMpi::Known(Mpi::OpenMpi);
        }
        hydra |= k.starts_with(b"HYDRA_") || k.starts_with(b"MPIR_CVAR_");
        pmi |= k.starts_with(b"PMI_");
    }
    match (hydra, pmi) {
        (true, _) => EnvMpi::Known(Mpi::Mpich),
        (false, true) => EnvMpi::Ambiguous,
        (false, false) => EnvMpi::Unknown,
    }
}

fn shim_candidates(exe_dir: &Path, mpi: Mpi) -> [PathBuf; 2] {
    let file = format!("libtau_pmpi_{}.so", mpi.tag());
    [exe_dir.join("..").join("lib").join(&file), exe_dir.join("lib").join(&file)]
}

fn find_shim(exe_dir: &Path, mpi: Mpi) -> Result<PathBuf, String> {
    let candidates = shim_candidates(exe_dir, mpi);
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        // A clean absolute path: the child may change directory.
        return Ok(found.canonicalize().unwrap_or_else(|_| found.clone()));
    }
    Err(format!(
        "the {} shim is not installed: neither {} nor {} exists",
        mpi.display(),
        candidates[0].display(),
        candidates[1].display()
    ))
}

/// `LD_PRELOAD` with the shim first, keeping what was already preloaded.
fn ld_preload(shim: &Path, existing: Option<&OsStr>) -> OsString {
    let mut out = OsString::from(shim.as_os_str());
    if let Some(existing) = existing {
        let rest: Vec<&[u8]> = existing
            .as_bytes()
            .split(|b| matches!(b, b':' | b' '))
            .filter(|p| !p.is_empty() && *p != shim.as_os_str().as_bytes())
            .collect();
        for p in rest {
            out.push(":");
            out.push(OsStr::from_bytes(p));
        }
    }
    out
}

/// Every library the loader would map for `path`, as listed by `ldd`.
fn ldd_libs(path: &Path) -> Option<Vec<String>> {
    let out = Command::new("ldd").arg(path).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn libraries_name_the_implementation() {
        assert_eq!(mpi_from_libs(["libm.so.6", "libmpi.so.40", "libc.so.6"]), Some(Mpi::OpenMpi));
        assert_eq!(mpi_from_libs(["libmpi_mpifh.so.40"]), Some(Mpi::OpenMpi));
        assert_eq!(mpi_from_libs(["libmpich.so.12"]), Some(Mpi::Mpich));
        assert_eq!(mpi_from_libs(["/usr/lib/x86_64-linux-gnu/libmpich.so.12"]), Some(Mpi::Mpich));
        assert_eq!(mpi_from_libs(["libmpifort.so.12", "libmpi.so.12"]), Some(Mpi::Mpich));
        assert_eq!(mpi_from_libs(["libc.so.6", "libmpfr.so.6"]), None);
    }

    #[test]
    fn mpirun_environment_names_the_implementation() {
        use EnvMpi::*;
        assert_eq!(mpi_from_env(env(&[("PATH", "/bin"), ("OMPI_COMM_WORLD_RANK", "0")])), Known(Mpi::OpenMpi));
        assert_eq!(mpi_from_env(env(&[("HYDRA_CONTROL_FD", "7")])), Known(Mpi::Mpich));
        // What MPICH's hydra gives each rank.
        assert_eq!(
            mpi_from_env(env(&[("MPIR_CVAR_CH3_INTERFACE_HOSTNAME", "n1"), ("PMI_RANK", "0"), ("PMI_FD", "6")])),
            Known(Mpi::Mpich)
        );
        // Open MPI also exports PMIX_* and may pass PMI_* through: OMPI_ wins.
        assert_eq!(mpi_from_env(env(&[("PMI_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2")])), Known(Mpi::OpenMpi));
        assert_eq!(mpi_from_env(env(&[("OMPI_COMM_WORLD_SIZE", "2"), ("HYDRA_CONTROL_FD", "7")])), Known(Mpi::OpenMpi));
        // srun --mpi=pmi2 sets PMI_* for Open MPI and MPICH jobs alike.
        assert_eq!(mpi_from_env(env(&[("PMI_RANK", "1"), ("PMI_FD", "5"), ("SLURM_JOB_ID", "9")])), Ambiguous);
        assert_eq!(mpi_from_env(env(&[("HOME", "/root"), ("PMIX_RANK", "0")])), Unknown);
    }

    #[test]
    fn ambiguous_environment_is_refused_unless_the_program_names_its_mpi() {
        let prog = OsStr::new("/usr/bin/python3");
        // The program's own links settle it, whatever the environment says.
        assert_eq!(
            decide(Some((Mpi::OpenMpi, "linked to its MPI library")), EnvMpi::Ambiguous, prog),
            Ok((Mpi::OpenMpi, "linked to its MPI library".to_owned()))
        );
        assert_eq!(
            decide(Some((Mpi::Mpich, "linked")), EnvMpi::Known(Mpi::OpenMpi), prog).map(|(m, _)| m),
            Ok(Mpi::Mpich)
        );
        assert_eq!(
            decide(None, EnvMpi::Known(Mpi::Mpich), prog),
            Ok((Mpi::Mpich, "from the environment of the launching mpirun".to_owned()))
        );
        assert_eq!(
            decide(None, EnvMpi::Ambiguous, prog),
            Err("cannot tell which MPI /usr/bin/python3 uses: it is not linked to Open MPI or MPICH, and its \
                 launcher set PMI_* variables only, which Slurm's srun --mpi=pmi2 sets for either (no OMPI_*, \
                 HYDRA_* or MPIR_CVAR_*)"
                .to_owned())
        );
        assert_eq!(
            decide(None, EnvMpi::Unknown, prog),
            Err("cannot tell which MPI /usr/bin/python3 uses: it is not linked to Open MPI or MPICH and it was not \
                 started by their mpirun"
                .to_owned())
        );
    }

    #[test]
    fn fortran_libraries_without_wrappers_are_named() {
        let prog = OsStr::new("./climate");
        let needed = ["libmpi_usempif08.so.40".to_owned(), "libmpi.so.40".to_owned(), "libc.so.6".to_owned()];
        assert_eq!(
            fortran_notice(prog, &needed, "libmpi_usempif08 libmpi_usempi_ignore_tkr libmpi_mpifh", Mpi::OpenMpi),
            None
        );
        assert_eq!(
            fortran_notice(prog, &needed, "", Mpi::OpenMpi).as_deref(),
            Some(
                "./climate calls MPI from Fortran through libmpi_usempif08.so.40, which the Open MPI shim has no \
                 wrappers for: those calls are not counted"
            )
        );
        let both = ["libmpi_mpifh.so.40".to_owned(), "libmpi_usempif08.so.40".to_owned()];
        assert_eq!(
            fortran_notice(prog, &both, "libmpi_mpifh", Mpi::OpenMpi).as_deref(),
            Some(
                "./climate calls MPI from Fortran through libmpi_usempif08.so.40, which the Open MPI shim has no \
                 wrappers for: those calls are not counted"
            )
        );
        let mpich = ["libmpichfort.so.12".to_owned()];
        assert!(fortran_notice(prog, &mpich, "libmpichfort", Mpi::Mpich).is_none());
        assert!(fortran_notice(prog, &mpich, "libmpi_mpifh", Mpi::Mpich).is_some());
        // C programs: nothing to say.
        assert!(fortran_notice(prog, &["libmpich.so.12".to_owned()], "", Mpi::Mpich).is_none());
    }

    #[test]
    fn shim_is_prepended_once() {
        let shim = Path::new("/opt/tau/lib/libtau_pmpi_mpich.so");
        assert_eq!(ld_preload(shim, None), OsString::from("/opt/tau/lib/libtau_pmpi_mpich.so"));
        assert_eq!(
            ld_preload(shim, Some(OsStr::new("libfoo.so /x/libbar.so"))),
            OsString::from("/opt/tau/lib/libtau_pmpi_mpich.so:libfoo.so:/x/libbar.so")
        );
        assert_eq!(
            ld_preload(shim, Some(OsStr::new("/opt/tau/lib/libtau_pmpi_mpich.so:libfoo.so"))),
            OsString::from("/opt/tau/lib/libtau_pmpi_mpich.so:libfoo.so")
        );
    }

    #[test]
    fn shims_are_looked_up_in_both_layouts() {
        let [dist, dev] = shim_candidates(Path::new("/opt/tau/bin"), Mpi::OpenMpi);
        assert_eq!(dist, Path::new("/opt/tau/bin/../lib/libtau_pmpi_openmpi.so"));
        assert_eq!(dev, Path::new("/opt/tau/bin/lib/libtau_pmpi_openmpi.so"));
        let err = find_shim(Path::new("/nonexistent/bin"), Mpi::Mpich).unwrap_err();
        assert_eq!(
            err,
            "the MPICH shim is not installed: neither /nonexistent/bin/../lib/libtau_pmpi_mpich.so \
             nor /nonexistent/bin/lib/libtau_pmpi_mpich.so exists"
        );
    }
}
