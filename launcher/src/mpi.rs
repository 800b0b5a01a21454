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

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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
        eprintln!("tau_metric_proxy_run: {} program ({how}): preloading {}", mpi.display(), shim.display());
    }
    let mut vars = vec![(OsString::from("LD_PRELOAD"), ld_preload(&shim, std::env::var_os("LD_PRELOAD").as_deref()))];
    if verbose {
        vars.push((SHIM_VERBOSE_ENV.into(), "1".into()));
    }
    Ok(vars)
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

/// `DT_NEEDED` entries of a 64-bit little-endian ELF file.
fn needed_libs(path: &Path) -> std::io::Result<Vec<String>> {
    use std::io::{Error, ErrorKind};
    let bad = |what: &str| Error::new(ErrorKind::InvalidData, what.to_owned());
    let f = File::open(path)?;
    let read = |off: u64, len: usize| -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off)?;
        Ok(buf)
    };
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let hdr = read(0, 64)?;
    if &hdr[..4] != b"\x7fELF" || hdr[4] != 2 || hdr[5] != 1 {
        return Err(bad("not a 64-bit little-endian ELF file"));
    }
    let (phoff, phentsize, phnum) = (u64_at(&hdr, 0x20), u16_at(&hdr, 0x36) as u64, u16_at(&hdr, 0x38) as u64);
    if phentsize < 56 || phnum > 4096 {
        return Err(bad("bad program headers"));
    }
    let phs = read(phoff, (phentsize * phnum) as usize)?;
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum as usize {
        let ph = &phs[i * phentsize as usize..];
        let p_type = u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]);
        let (offset, vaddr, filesz) = (u64_at(ph, 0x08), u64_at(ph, 0x10), u64_at(ph, 0x20));
        match p_type {
            1 => loads.push((vaddr, offset, filesz)),
            2 => dynamic = Some((offset, filesz)),
            _ => {}
        }
    }
    let Some((dyn_off, dyn_size)) = dynamic else { return Ok(Vec::new()) };
    let dyns = read(dyn_off, dyn_size.min(1 << 20) as usize)?;
    let (mut needed, mut strtab, mut strsz) = (Vec::new(), None, 0u64);
    for e in dyns.chunks_exact(16) {
        let (tag, val) = (u64_at(e, 0), u64_at(e, 8));
        match tag {
            0 => break,
            1 => needed.push(val),
            5 => strtab = Some(val),
            10 => strsz = val,
            _ => {}
        }
    }
    let strtab = strtab.ok_or_else(|| bad("no string table"))?;
    let file_off = loads
        .iter()
        .find(|(vaddr, _, size)| strtab >= *vaddr && strtab < vaddr + size)
        .map(|(vaddr, off, _)| strtab - vaddr + off)
        .ok_or_else(|| bad("string table outside the file"))?;
    let strings = read(file_off, strsz.min(16 << 20) as usize)?;
    Ok(needed
        .into_iter()
        .filter_map(|o| {
            let s = strings.get(o as usize..)?;
            let end = s.iter().position(|b| *b == 0)?;
            Some(String::from_utf8_lossy(&s[..end]).into_owned())
        })
        .collect())
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

    #[test]
    fn elf_needed_entries_are_read() {
        let me = std::env::current_exe().unwrap();
        let libs = needed_libs(&me).unwrap();
        assert!(libs.iter().any(|l| l.starts_with("libc.so")), "{libs:?}");
        let script = std::env::temp_dir().join(format!("tau_mpi_script_{}", std::process::id()));
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        assert!(needed_libs(&script).is_err());
        std::fs::remove_file(&script).unwrap();
    }
}
