//! Generates the list of `MPI_*` functions the installed `mpi.h` declares.
//!
//! MPI is found through `$MPICC` (else `mpicc`); its `-show`/`--showme`
//! output names the real C compiler and the include directories. The header
//! is preprocessed with that compiler and handed to `pmpi-gen`, which parses
//! it and writes `$OUT_DIR/mpi.rs`: the constants the size rules need
//! (`MPI_IN_PLACE`, `MPI_ROOT`, ..., printed by a tiny C probe compiled and
//! run here), the sizes of every MPI scalar type (checked at compile time),
//! and one line per function with the implementation's exact C signature
//! (Open MPI handles are pointers, MPICH handles are ints) and its byte
//! rule, and one line per Fortran entry point of the Fortran MPI libraries
//! (found through the matching Fortran wrapper, `$MPIFC` else `mpif90`). The
//! wrapper body is Rust source (`src/entry.rs`), not written here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MPICC");
    println!("cargo:rerun-if-env-changed=MPIFC");
    println!("cargo:rerun-if-changed=build.rs");
    let mpicc = std::env::var("MPICC").unwrap_or_else(|_| "mpicc".to_owned());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    match generate(&mpicc, &out) {
        Ok(report) => {
            for line in report.lines() {
                println!("cargo:warning={line}");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// The C compiler behind an MPI wrapper compiler and its `-I` flags.
struct Toolchain {
    cc: String,
    cflags: Vec<String>,
}

fn not_found(mpicc: &str, why: &str) -> String {
    format!("MPI not found: install libopenmpi-dev or libmpich-dev, or set MPICC ({mpicc}: {why})")
}

fn toolchain(mpicc: &str) -> Result<Toolchain, String> {
    let mut last = String::new();
    for flag in ["-show", "--showme"] {
        match Command::new(mpicc).arg(flag).output() {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                let mut words = text.split_whitespace();
                let Some(cc) = words.next() else { continue };
                let cflags = words.filter(|w| w.starts_with("-I") || w.starts_with("-D")).map(str::to_owned).collect();
                return Ok(Toolchain { cc: cc.to_owned(), cflags });
            }
            Ok(o) => last = format!("`{mpicc} {flag}` failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => return Err(not_found(mpicc, &e.to_string())),
        }
    }
    Err(not_found(mpicc, &last))
}

/// `mpi.h`, and `mpi-ext.h` when the MPI has one (Open MPI's `MPIX_*`).
fn preprocess(tc: &Toolchain, out: &Path) -> Result<String, String> {
    let src = out.join("mpi_header.c");
    let ext = tc.cflags.iter().filter_map(|f| f.strip_prefix("-I")).any(|d| Path::new(d).join("mpi-ext.h").is_file());
    let text = if ext { "#include <mpi.h>\n#include <mpi-ext.h>\n" } else { "#include <mpi.h>\n" };
    std::fs::write(&src, text).map_err(|e| e.to_string())?;
    let o = Command::new(&tc.cc)
        .args(&tc.cflags)
        .args(["-E", "-P"])
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tc.cc))?;
    if !o.status.success() {
        return Err(format!("preprocessing mpi.h failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Compiles and runs the C probe printing the constants and type sizes.
fn probe(tc: &Toolchain, out: &Path, c: &str) -> Result<String, String> {
    let src = out.join("mpi_probe.c");
    let exe = out.join("mpi_probe");
    std::fs::write(&src, c).map_err(|e| e.to_string())?;
    let o = Command::new(&tc.cc)
        .args(&tc.cflags)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tc.cc))?;
    if !o.status.success() {
        return Err(format!("compiling the MPI constant probe failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
    }
    let o = Command::new(&exe).output().map_err(|e| format!("cannot run the MPI constant probe: {e}"))?;
    if !o.status.success() {
        return Err("the MPI constant probe failed".to_owned());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn generate(mpicc: &str, out: &Path) -> Result<String, String> {
    let tc = toolchain(mpicc)?;
    // Regenerate when the MPI installation changes.
    for dir in tc.cflags.iter().filter_map(|f| f.strip_prefix("-I")) {
        for header in ["mpi.h", "mpi_proto.h", "mpi-ext.h"] {
            let h = Path::new(dir).join(header);
            if h.is_file() {
                println!("cargo:rerun-if-changed={}", h.display());
            }
        }
    }
    let text = preprocess(&tc, out)?;
    let fortran = fortran_libraries(&tc, mpicc)?;
    let generated = pmpi_gen::generate(&text, mpicc, |c| probe(&tc, out, c), &fortran)?;
    std::fs::write(out.join("mpi.rs"), &generated.module.source).map_err(|e| e.to_string())?;
    let excluded = out.join("excluded.txt");
    std::fs::write(&excluded, &generated.excluded).map_err(|e| e.to_string())?;
    Ok(generated.report(&excluded))
}

/// The words of `WRAPPER -show` (the compiler and its flags), if it runs.
fn show(wrapper: &str) -> Option<Vec<String>> {
    let o = Command::new(wrapper).arg("-show").output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_owned).collect())
}

/// The symbols of the Fortran MPI libraries of the same MPI: the `-l`
/// libraries that its Fortran wrapper (`$MPIFC`, else `mpicc`'s name with
/// `mpif90`) links and its C wrapper does not, found as the linker would
/// (its `-L` directories, then the compiler's), read with `nm -D`. Without
/// a Fortran wrapper there are none.
fn fortran_libraries(tc: &Toolchain, mpicc: &str) -> Result<Vec<pmpi_gen::Library>, String> {
    let mpifc = std::env::var("MPIFC").unwrap_or_else(|_| {
        let (dir, file) = mpicc.rsplit_once('/').map_or(("", mpicc), |(d, f)| (d, f));
        let file = file.replacen("mpicc", "mpif90", 1);
        if dir.is_empty() {
            file
        } else {
            format!("{dir}/{file}")
        }
    });
    let Some(words) = show(&mpifc) else { return Ok(Vec::new()) };
    let c_libs: Vec<String> = show(mpicc).unwrap_or_default().into_iter().filter(|w| w.starts_with("-l")).collect();
    let dirs: Vec<&str> = words.iter().filter_map(|w| w.strip_prefix("-L")).collect();
    let mut libs = Vec::new();
    for name in words.iter().filter(|w| w.starts_with("-l") && !c_libs.contains(w)).filter_map(|w| w.strip_prefix("-l"))
    {
        let file = format!("lib{name}.so");
        let mut path = dirs.iter().map(|d| Path::new(d).join(&file)).find(|p| p.is_file());
        if path.is_none() {
            let o = Command::new(&tc.cc).arg(format!("-print-file-name={file}")).output();
            let found = o.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
            path = Some(PathBuf::from(found)).filter(|p| p.is_absolute() && p.is_file());
        }
        let Some(path) = path else { continue };
        let o = Command::new("nm")
            .args(["-D", "--defined-only"])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run nm on {}: {e} (install binutils)", path.display()))?;
        if !o.status.success() {
            // A linker script (libm.so), not a library of MPI's.
            continue;
        }
        let path = path.canonicalize().unwrap_or(path);
        let lib = pmpi_gen::Library::from_nm(&format!("lib{name}"), &String::from_utf8_lossy(&o.stdout));
        if lib.exports_mpi() {
            println!("cargo:rerun-if-changed={}", path.display());
            libs.push(lib);
        }
    }
    Ok(libs)
}
