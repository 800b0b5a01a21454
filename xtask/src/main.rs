//! `cargo xtask`: the project's chores (dist, test, demo, bench) in Rust.
#![forbid(unsafe_code)]

mod bench;
mod bench_jobs;
mod bench_mpi;
mod bench_strace;
mod codegen;
mod demo;
mod deps;
mod dist;
mod docs;
mod fuzz;
mod shim;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  demo    install what is missing, build, start the proxy, run an MPI program
          and a traced program instrumented, and show their metrics
  test    install what is missing, build, and run the whole test suite
          (formatting, clippy, unit and integration tests)
  dist    build a relocatable release into target/dist (bin/, lib/, share/)
  bench   print the performance figures (ingest, render, memory, jobs, MPI, tracer)
  codegen [--check]
          write (or check) strace-tracer/src/tables.rs from the kernel's uapi
          syscall headers (Debian's linux-libc-dev)
  fuzz [SECONDS]
          grow the fuzz corpus under fuzz/corpus (cargo-fuzz, SECONDS per target)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run(),
        Some("test") => test(),
        Some("dist") => dist::run().map(|_| ()),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("codegen") => codegen::run(&args[1..]),
        // Internal: the load generator of the ingest benchmark, re-executed
        // under taskset so that it does not share the daemon's CPU.
        Some("ingest-load") => bench::ingest_load(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown or missing command\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace root").to_owned()
}

/// Runs a command in the workspace root, failing on a non-zero status.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: $ {}", shown.replace('"', ""));
    let status = cmd.current_dir(root()).status().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `cargo xtask test`: everything CI checks.
fn test() -> Result<(), String> {
    deps::ensure()?;
    run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run_cmd(cargo().args(["build", "--workspace", "--bins"]))?;
    shim::build_shims(false)?;
    run_cmd(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run_cmd(cargo().args(["test", "--workspace"]))
}
