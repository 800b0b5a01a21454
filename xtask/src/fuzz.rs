//! `cargo xtask fuzz [SECONDS]`: seeds the fuzz corpus with well-formed
//! conversations, then runs each cargo-fuzz target for SECONDS (default 60),
//! growing the corpus checked in under `fuzz/corpus/` that CI replays.

use std::path::Path;
use std::process::Command;

use protocol::{encode_frame, Desc, Identity, Preamble, Request, Role, Sample, Scale, Value};

use crate::{cargo, root, run_cmd};

const TARGETS: &[&str] = &["frames", "session"];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let seconds: u64 = match args.first() {
        Some(s) => s.parse().map_err(|_| format!("fuzz: {s:?} is not a number of seconds"))?,
        None => 60,
    };
    seed()?;
    if Command::new("cargo").args(["fuzz", "--version"]).output().map(|o| !o.status.success()).unwrap_or(true) {
        run_cmd(cargo().args(["install", "--locked", "cargo-fuzz"]))?;
    }
    for target in TARGETS {
        let corpus = format!("corpus/{target}");
        let time = format!("-max_total_time={seconds}");
        in_fuzz_dir(&["fuzz", "run", target, &corpus, "--", &time, "-max_len=4096"])?;
        // Keep the corpus small: only inputs that add coverage.
        in_fuzz_dir(&["fuzz", "cmin", target, &corpus])?;
    }
    Ok(())
}

/// Runs `cargo ARGS` in `fuzz/`. cargo-fuzz needs the sanitizer flags of a
/// nightly compiler, which RUSTC_BOOTSTRAP enables on a stable one.
fn in_fuzz_dir(args: &[&str]) -> Result<(), String> {
    eprintln!("xtask: $ (cd fuzz && cargo {})", args.join(" "));
    let status = Command::new("cargo")
        .current_dir(root().join("fuzz"))
        .args(args)
        .env("RUSTC_BOOTSTRAP", "1")
        .status()
        .map_err(|e| format!("cannot run cargo {}: {e}", args.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed with {status}", args.join(" ")))
    }
}

fn collector_stream(parts: &[Request]) -> Vec<u8> {
    let mut b = Preamble::new(Role::Collector).encode().to_vec();
    for p in parts {
        encode_frame(p, &mut b).expect("seed frames encode");
    }
    b
}

/// Writes the seed conversations (kept as they are if already there).
fn seed() -> Result<(), String> {
    let who = Identity { pid: 42, start_time: 7, nonce: 1, program: "seed".into() };
    let send = Desc::counter("mpi_hits_total", &[("function", "MPI_Send")], "Calls");
    let time = Desc::counter("mpi_time_total", &[("function", "MPI_Send")], "Seconds").with_scale(Scale::Nano);
    let gauge = Desc::gauge("ranks", &[("job", "a\"b\\c\nd")], "Ranks");
    let full = collector_stream(&[
        Request::Hello { identity: who.clone() },
        Request::Register { id: 0, desc: send.clone() },
        Request::Register { id: 1, desc: time },
        Request::Register { id: 2, desc: gauge },
        Request::Update {
            samples: vec![
                Sample { id: 0, value: Value::Int(3) },
                Sample { id: 1, value: Value::Int(1_500) },
                Sample { id: 2, value: Value::Float(4.0) },
            ],
        },
        Request::Resync { samples: vec![Sample { id: 0, value: Value::Int(10) }] },
        Request::Update { samples: vec![Sample { id: 0, value: Value::Float(f64::NAN) }] },
        Request::Goodbye,
    ]);
    let mut query = Preamble::new(Role::Query).encode().to_vec();
    for r in [
        Request::List,
        Request::Values,
        Request::Get { names: vec!["mpi_hits_total{function=\"MPI_Send\"}".into(), "nope".into()] },
        Request::Changes { since: 0 },
    ] {
        encode_frame(&r, &mut query).expect("seed frames encode");
    }
    let conflict = collector_stream(&[
        Request::Hello { identity: who },
        Request::Register { id: 0, desc: send },
        Request::Register { id: 1, desc: Desc::gauge("mpi_hits", &[], "x") },
        Request::Register { id: 70_000, desc: Desc::counter("x_total", &[], "x") },
        Request::Update { samples: vec![Sample { id: 5, value: Value::Int(1) }] },
    ]);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("collector-full", full.clone()),
        ("collector-truncated", full[..full.len() / 2].to_vec()),
        ("query", query.clone()),
        ("conflicts", conflict),
        ("frames-only", full[8..].to_vec()),
        ("query-frames-only", query[8..].to_vec()),
    ];
    for target in TARGETS {
        let dir = root().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (name, bytes) in &seeds {
            write_new(&dir.join(format!("seed-{name}")), bytes)?;
        }
    }
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
