//! Repository hygiene, checked as an ordinary test.

use std::path::{Path, PathBuf};

use crate::root;

/// Crates allowed to hold `unsafe` code, each behind one module.
const UNSAFE_CRATES: &[&str] = &["pmpi-shim", "strace-tracer"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    assert!(files.len() > 20, "found only {} Rust files: wrong root?", files.len());
    files
}

#[test]
fn every_rust_file_opens_with_a_doc_line() {
    let bad: Vec<String> = all_rust_files()
        .into_iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap_or_default().starts_with("//!"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(bad.is_empty(), "files not starting with a `//!` line: {bad:?}");
}

#[test]
fn crate_roots_forbid_unsafe_outside_the_two_ffi_crates() {
    let mut bad = Vec::new();
    for f in all_rust_files() {
        let rel = f.strip_prefix(root()).unwrap().to_string_lossy().into_owned();
        let krate = rel.split('/').next().unwrap_or("");
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let is_root = rel.ends_with("src/main.rs")
            || rel.ends_with("src/lib.rs")
            || rel.ends_with("it/main.rs")
            || rel == "tests/lib.rs";
        // This file names what it looks for.
        if UNSAFE_CRATES.contains(&krate)
            || rel.contains("/build.rs")
            || rel.starts_with("fuzz/")
            || rel == "xtask/src/tidy.rs"
        {
            continue;
        }
        if is_root && !text.contains("#![forbid(unsafe_code)]") {
            bad.push(format!("{rel}: crate root without #![forbid(unsafe_code)]"));
        }
        if text.lines().any(|l| {
            let code = l.split("//").next().unwrap_or("");
            code.contains("unsafe {") || code.contains("unsafe fn") || code.contains("unsafe impl")
        }) {
            bad.push(format!("{rel}: unsafe code"));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// In the two crates that need it, `unsafe` code stays in the named FFI modules.
#[test]
fn unsafe_code_stays_in_the_ffi_modules() {
    let allowed = [
        // pmpi-shim: cycle counter, leaked-slab list, PMPI lookup and queries, Fortran twins and
        // argument readers, entry points, process hooks.
        "pmpi-shim/src/cycles.rs",
        "pmpi-shim/src/list.rs",
        "pmpi-shim/src/pmpi.rs",
        "pmpi-shim/src/fortran.rs",
        "pmpi-shim/src/entry.rs",
        "pmpi-shim/src/hooks.rs",
        "strace-tracer/src/sys.rs",
    ];
    let mut bad = Vec::new();
    for f in all_rust_files() {
        let rel = f.strip_prefix(root()).unwrap().to_string_lossy().into_owned();
        let krate = rel.split('/').next().unwrap_or("");
        if !UNSAFE_CRATES.contains(&krate) || allowed.contains(&rel.as_str()) || rel.ends_with("build.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("unsafe {")
                || code.contains("unsafe fn")
                || code.contains("unsafe extern")
                || code.contains("unsafe impl")
            {
                bad.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "unsafe code outside the FFI modules {allowed:?}: {bad:#?}");
}

#[test]
fn no_ignored_tests_or_placeholders() {
    let patterns = ["#[ignore", "#[should_panic", "todo!(", "unimplemented!("];
    let mut bad = Vec::new();
    for f in all_rust_files() {
        if f.ends_with("tidy.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for p in patterns {
            if text.contains(p) {
                bad.push(format!("{}: {p}", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    assert!(readme.contains("cargo xtask test"), "README.md must show the test command");
    assert!(ci.lines().any(|l| l.trim_start().starts_with("cargo xtask test")), ".ci/run must run `cargo xtask test`");
}
