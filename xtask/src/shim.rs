//! Builds one PMPI shim per MPI implementation installed on the machine.
//!
//! Each implementation gets its own `CARGO_TARGET_DIR` (`target/mpi-<impl>`)
//! so the two builds, which differ only by `MPICC`, never invalidate each
//! other. The results are copied to `target/<profile>/lib/libtau_pmpi_<impl>.so`,
//! where `tau_metric_proxy_run` in `target/<profile>/` finds them.

use std::path::PathBuf;
use std::process::Command;

use crate::{cargo, root, run_cmd};

/// Debian installs each implementation's compiler wrapper under its own
/// name; a plain `mpicc` is used only when neither is present.
const WRAPPERS: &[(&str, &str)] = &[("openmpi", "mpicc.openmpi"), ("mpich", "mpicc.mpich")];

fn works(mpicc: &str) -> Option<String> {
    let out = Command::new(mpicc).arg("-show").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `(impl, mpicc)` for every implementation found.
fn implementations() -> Vec<(&'static str, String)> {
    let found: Vec<(&str, String)> =
        WRAPPERS.iter().filter(|(_, cc)| works(cc).is_some()).map(|(i, cc)| (*i, (*cc).to_owned())).collect();
    if !found.is_empty() {
        return found;
    }
    let mpicc = std::env::var("MPICC").unwrap_or_else(|_| "mpicc".to_owned());
    match works(&mpicc) {
        Some(show) if show.split_whitespace().any(|w| w.starts_with("-lmpich")) => vec![("mpich", mpicc)],
        Some(show) if show.split_whitespace().any(|w| w == "-lmpi") => vec![("openmpi", mpicc)],
        _ => Vec::new(),
    }
}

/// Builds the shims; returns `(impl, path)` of each one, in
/// `target/<debug|release>/lib/`. No MPI installed gives an empty list.
pub(crate) fn build_shims(release: bool) -> Result<Vec<(String, PathBuf)>, String> {
    let profile = if release { "release" } else { "debug" };
    let lib_dir = root().join("target").join(profile).join("lib");
    let mut built = Vec::new();
    for (imp, mpicc) in implementations() {
        let target_dir = root().join("target").join(format!("mpi-{imp}"));
        let mut cmd = cargo();
        cmd.args(["build", "-p", "pmpi-shim"]).env("CARGO_TARGET_DIR", &target_dir).env("MPICC", &mpicc);
        if release {
            cmd.arg("--release");
        }
        run_cmd(&mut cmd)?;
        let from = target_dir.join(profile).join("libtau_pmpi.so");
        std::fs::create_dir_all(&lib_dir).map_err(|e| format!("cannot create {}: {e}", lib_dir.display()))?;
        let to = lib_dir.join(format!("libtau_pmpi_{imp}.so"));
        // Copy through a temporary name: a running program may have the
        // old shim mapped, and rename keeps its inode intact.
        let tmp = lib_dir.join(format!(".libtau_pmpi_{imp}.so.tmp"));
        std::fs::copy(&from, &tmp).map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), tmp.display()))?;
        std::fs::rename(&tmp, &to).map_err(|e| format!("cannot move {} to {}: {e}", tmp.display(), to.display()))?;
        built.push((imp.to_owned(), to));
    }
    Ok(built)
}
