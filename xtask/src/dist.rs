//! `cargo xtask dist`: a relocatable release tree in `target/dist`.
//!
//! Layout: `bin/` holds the four tools, `lib/` one PMPI shim per MPI
//! implementation found, `share/` the man pages, shell completions, systemd
//! units, Prometheus rules and alerts, and the Grafana dashboard (see `docs.rs`). The tools find each other relative to their own
//! location, so the tree can be moved or copied anywhere.

use std::path::PathBuf;

use crate::{cargo, root, run_cmd, shim};

/// The tools shipped in `bin/`.
pub(crate) const TOOLS: &[&str] = &["tau_metric_proxy", "tau_metric_proxy_run", "tau_strace", "tau_metric_client"];

/// Builds the release and fills `target/dist`; returns its path.
pub(crate) fn run() -> Result<PathBuf, String> {
    let dist = root().join("target/dist");
    if dist.exists() {
        std::fs::remove_dir_all(&dist).map_err(|e| format!("cannot clean {}: {e}", dist.display()))?;
    }
    run_cmd(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    let bin = dist.join("bin");
    let lib = dist.join("lib");
    for d in [&bin, &lib] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    for tool in TOOLS {
        let from = root().join("target/release").join(tool);
        copy(&from, &bin.join(tool))?;
    }
    let shims = shim::build_shims(true)?;
    if shims.is_empty() {
        eprintln!("xtask: warning: no MPI implementation found: no PMPI shim in the dist (install libopenmpi-dev or libmpich-dev)");
    }
    for (_, path) in &shims {
        let name = path.file_name().ok_or("shim path has no file name")?;
        copy(path, &lib.join(name))?;
    }
    crate::docs::install(&dist, &root())?;
    eprintln!("xtask: relocatable tree in {}", dist.display());
    Ok(dist)
}

fn copy(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    std::fs::copy(from, to).map(|_| ()).map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}
