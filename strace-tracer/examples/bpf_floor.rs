//! The floor of `cargo xtask bench strace`: runs a command with
//! `bpf/floor.bpf.c` attached, loaded with the same crate as `tau_strace`'s
//! eBPF engine, the command marked in its map. The programs only ask, at
//! each syscall entry and exit, whether the calling thread is marked: what
//! any engine on these tracepoints must pay at least.
//!
//! Usage: `bpf_floor COMMAND [ARGS]...`; exits with the command's status.
#![forbid(unsafe_code)]

use std::process::Command;

use aya::maps::HashMap;
use aya::programs::RawTracePoint;
use aya::Ebpf;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floor.bpf.o"));

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: bpf_floor COMMAND [ARGS]...");
        std::process::exit(2);
    }
    match run(&args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("bpf_floor: {e}");
            std::process::exit(1);
        }
    }
}

fn run(args: &[std::ffi::OsString]) -> Result<i32, String> {
    let mut ebpf = Ebpf::load(OBJECT).map_err(|e| format!("cannot load the floor: {e}"))?;
    for name in ["sys_enter", "sys_exit"] {
        let program: &mut RawTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("no program {name}"))?
            .try_into()
            .map_err(|e| format!("{name}: {e}"))?;
        program.load().map_err(|e| format!("cannot load {name}: {e}"))?;
        program.attach(name).map_err(|e| format!("cannot attach {name}: {e}"))?;
    }
    let mut threads: HashMap<_, u32, u64> =
        HashMap::try_from(ebpf.map_mut("threads").ok_or("no map threads")?).map_err(|e| e.to_string())?;
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", args[0].to_string_lossy()))?;
    // Marked once started: the few calls of its start are not checked as
    // marked, which a benchmark of many thousand calls does not see.
    threads.insert(child.id(), 0, 0).map_err(|e| format!("cannot mark the command: {e}"))?;
    let status = child.wait().map_err(|e| e.to_string())?;
    Ok(status.code().unwrap_or(1))
}
