//! Compiles the eBPF C programs (`bpf/*.bpf.c`) with clang into objects
//! that `src/bpf.rs` (the engine) and `examples/bpf_floor.rs` (the
//! benchmark's floor) embed; only the C source is committed.

use std::path::PathBuf;
use std::process::Command;

const PROGRAMS: [&str; 2] = ["count", "floor"];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let clang = std::env::var_os("CLANG").unwrap_or_else(|| "clang".into());
    println!("cargo:rerun-if-env-changed=CLANG");
    for name in PROGRAMS {
        let src = format!("bpf/{name}.bpf.c");
        println!("cargo:rerun-if-changed={src}");
        let obj = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            // <asm/types.h>, which <linux/types.h> includes, is per architecture.
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                panic!("clang failed ({s}) on {src}: the headers come from Debian's linux-libc-dev and libbpf-dev")
            }
            Err(e) => panic!("cannot run clang ({e}): install Debian's clang, linux-libc-dev and libbpf-dev"),
        }
    }
}
