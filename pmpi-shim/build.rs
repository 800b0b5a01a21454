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
//! rule. The wrapper body is Rust source (`src/entry.rs`), not written here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MPICC");
    println!("cargo:rerun-if-changed=build.rs");
    let mpicc = std::env::var("MPICC").unwrap_or_else(|_| "mpicc".to_owned());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    match generate(&mpicc, &out) {
        Ok(report) => println!("cargo:warning={report}"),
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

fn preprocess(tc: &Toolchain, out: &Path) -> Result<String, String> {
    let src = out.join("mpi_header.c");
    std::fs::write(&src, "#include <mpi.h>\n").map_err(|e| e.to_string())?;
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
        for header in ["mpi.h", "mpi_proto.h"] {
            let h = Path::new(dir).join(header);
            if h.is_file() {
                println!("cargo:rerun-if-changed={}", h.display());
            }
        }
    }
    let text = preprocess(&tc, out)?;
    let generated = pmpi_gen::generate(&text, mpicc, |c| probe(&tc, out, c))?;
    std::fs::write(out.join("mpi.rs"), &generated.module.source).map_err(|e| e.to_string())?;
    let excluded = out.join("excluded.txt");
    std::fs::write(&excluded, &generated.excluded).map_err(|e| e.to_string())?;
    Ok(generated.report(&excluded))
}
