//! What the Prometheus tests share: the shipped files, promtool, the
//! configuration generator.

use std::path::{Path, PathBuf};

use super::{cmd, tool, TempDir, TestCommand};

/// The recorded families and the label each is summed by.
pub const FAMILIES: [(&str, &str); 7] = [
    ("mpi_hits_total", "function"),
    ("mpi_size_total", "function"),
    ("mpi_time_total", "function"),
    ("strace_hits_total", "scall"),
    ("strace_size_total", "scall"),
    ("strace_time_total", "scall"),
    ("strace_errors_total", "scall"),
];

/// The shipped files, from the source tree.
pub fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").join("deploy").join(rel)
}

/// The shipped recording rules.
pub fn rules_file() -> PathBuf {
    deploy("prometheus/tau_metric_proxy.rules.yml")
}

/// `promtool ARGS`.
pub fn promtool(args: &[&str]) -> TestCommand {
    cmd("promtool").args(args).hint("promtool is installed (cargo xtask test installs it)")
}

/// Writes `tau_metric_client --prometheus-config NODES --prometheus-rules
/// RULES` to `dir/prometheus.yml` and has promtool check it (and the rules).
pub fn generate_config(dir: &TempDir, nodes: &str) -> PathBuf {
    let config = dir.join("prometheus.yml");
    let rules = rules_file();
    tool("tau_metric_client")
        .args(["--prometheus-config", nodes, "--prometheus-rules"])
        .arg(&rules)
        .arg("-o")
        .arg(&config)
        .run()
        .assert_success();
    let check = promtool(&["check", "config", config.to_str().unwrap()]).run();
    check.assert_success();
    assert!(check.combined().contains("SUCCESS: 46 rules found"), "{check}");
    config
}
