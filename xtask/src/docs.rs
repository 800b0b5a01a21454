//! Man pages and shell completions (bash, zsh, fish) for every tool, built
//! from the tools' own clap definitions, plus the systemd units and the
//! Prometheus rules, all installed under `share/` of the dist tree.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

// Each tool keeps its clap definition alone in one file, compiled here too,
// so that the pages and completions can never drift from the real flags.
#[allow(dead_code)]
#[path = "../../metric-client/src/cli.rs"]
mod client_cli;
#[allow(dead_code)] // the fields are read by the tool, not here
#[path = "../../proxy-daemon/src/cli.rs"]
mod daemon_cli;
#[allow(dead_code)]
#[path = "../../launcher/src/cli.rs"]
mod launcher_cli;
#[allow(dead_code)]
#[path = "../../strace-tracer/src/cli.rs"]
mod strace_cli;

/// Every tool's command line, named as installed in `bin/`.
pub(crate) fn commands() -> Vec<clap::Command> {
    vec![
        daemon_cli::Cli::command(),
        launcher_cli::Cli::command(),
        strace_cli::Cli::command(),
        client_cli::Cli::command(),
    ]
}

/// What every page says about the environment.
const ENVIRONMENT: &str = "\
.SH ENVIRONMENT
.TP
\\fBTAU_METRIC_PROXY\\fR
Path of the daemon's UNIX socket, used when \\fB\\-u\\fR is not given.
Without it, the socket is \\fI/tmp/tau_metric_proxy.<uid>.unix\\fR.
.TP
\\fBTAU_METRIC_PROXY_JOB\\fR
The job a command's collectors report (\\fBtau_metric_proxy_run \\-j\\fR sets it).
Without it: \\fBSLURM_JOB_ID\\fR (with \\fBSLURM_STEP_ID\\fR as \\fIID.STEP\\fR), \\fBPBS_JOBID\\fR,
\\fBLSB_JOBID\\fR, \\fBFLUX_JOB_ID\\fR, Open MPI's \\fBPMIX_NAMESPACE\\fR, or under MPICH's Hydra
its per-node proxy process, an id that holds on one node only.
";

const SEE_ALSO: &str = "\
.SH SEE ALSO
\\fBtau_metric_proxy\\fR(1), \\fBtau_metric_proxy_run\\fR(1), \\fBtau_strace\\fR(1), \\fBtau_metric_client\\fR(1),
\\fBprometheus\\fR(1)
";

/// The page of one tool: clap's sections, then ENVIRONMENT and SEE ALSO.
fn man_page(cmd: clap::Command) -> Result<Vec<u8>, std::io::Error> {
    let man = clap_mangen::Man::new(cmd).manual("tau_metric_proxy");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    out.extend_from_slice(ENVIRONMENT.as_bytes());
    out.extend_from_slice(SEE_ALSO.as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// Where each shell looks for completions under `share/`, and the file name.
fn completion_path(shell: Shell, tool: &str) -> PathBuf {
    match shell {
        Shell::Bash => PathBuf::from("bash-completion/completions").join(tool),
        Shell::Zsh => PathBuf::from("zsh/site-functions").join(format!("_{tool}")),
        Shell::Fish => PathBuf::from("fish/vendor_completions.d").join(format!("{tool}.fish")),
        _ => unreachable!("only bash, zsh and fish are generated"),
    }
}

/// Files shipped as they are in the source tree: `deploy/X` goes to
/// `share/tau_metric_proxy/X`.
const DEPLOY: &[&str] = &[
    "prometheus/tau_metric_proxy.rules.yml",
    "prometheus/tau_metric_proxy.alerts.yml",
    "grafana/tau_metric_proxy.json",
    "systemd/system/tau_metric_proxy.service",
    "systemd/system/tau_strace_service.service",
    "systemd/user/tau_metric_proxy.service",
];

/// Fills `share/` in `dist`; returns every file written.
pub(crate) fn install(dist: &Path, repo: &Path) -> Result<Vec<PathBuf>, String> {
    let share = dist.join("share");
    let mut written = Vec::new();
    let mut write = |rel: PathBuf, bytes: &[u8]| -> Result<(), String> {
        let path = share.join(rel);
        let dir = path.parent().expect("a file under share/");
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
        Ok(())
    };
    for cmd in commands() {
        let tool = cmd.get_name().to_owned();
        let page = man_page(cmd.clone()).map_err(|e| format!("man page of {tool}: {e}"))?;
        write(PathBuf::from("man/man1").join(format!("{tool}.1")), &page)?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &tool, &mut script);
            write(completion_path(shell, &tool), &script)?;
        }
    }
    for rel in DEPLOY {
        let from = repo.join("deploy").join(rel);
        let bytes = std::fs::read(&from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        write(PathBuf::from("tau_metric_proxy").join(rel), &bytes)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn pages_completions_units_and_rules_for_every_tool() {
        let dist = std::env::temp_dir().join(format!("tau-xtask-docs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dist);
        let written = install(&dist, &crate::root()).unwrap();
        let share = dist.join("share");
        let tools: Vec<String> = commands().iter().map(|c| c.get_name().to_owned()).collect();
        assert_eq!(tools, crate::dist::TOOLS);
        assert_eq!(written.len(), tools.len() * 4 + DEPLOY.len());
        // Each page names its tool and documents its real flags.
        let flags = [
            (
                "tau_metric_proxy",
                &[
                    "\\-\\-unix",
                    "\\-\\-port",
                    "\\-\\-allow\\-group",
                    "\\-\\-state",
                    "\\-\\-job\\-retention",
                    "\\-\\-max\\-jobs",
                    "\\-\\-profile\\-dir",
                ][..],
            ),
            ("tau_metric_proxy_run", &["\\-m", "\\-s", "\\-S", "\\-u", "\\-j"][..]),
            ("tau_strace", &["\\-\\-pid", "\\-\\-only", "\\-\\-interval", "\\-\\-unix", "\\-\\-max\\-threads"][..]),
            (
                "tau_metric_client",
                &[
                    "\\-\\-prometheus\\-config",
                    "\\-\\-prometheus\\-rules",
                    "\\-\\-track\\-list",
                    "\\-\\-jobs",
                    "\\-\\-job",
                    "\\-\\-report",
                ][..],
            ),
        ];
        for (tool, wanted) in flags {
            let page = read(&share.join(format!("man/man1/{tool}.1")));
            assert!(page.starts_with(&format!(".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH {tool} 1 ")), "{page}");
            for flag in wanted {
                assert!(page.contains(flag), "{tool}: {flag} missing:\n{page}");
            }
            assert!(page.contains(".SH ENVIRONMENT\n.TP\n\\fBTAU_METRIC_PROXY\\fR\n"), "{page}");
            // Completions know the same flags, and bash can read its script.
            let bash = share.join(format!("bash-completion/completions/{tool}"));
            let status = Command::new("bash").arg("-n").arg(&bash).status().unwrap();
            assert!(status.success(), "bash -n {}", bash.display());
            assert!(read(&bash).contains(&format!("complete -F _{tool} ")), "{}", bash.display());
            assert!(read(&share.join(format!("zsh/site-functions/_{tool}"))).starts_with(&format!("#compdef {tool}\n")));
            assert!(read(&share.join(format!("fish/vendor_completions.d/{tool}.fish")))
                .contains(&format!("complete -c {tool} ")));
        }
        let fish = read(&share.join("fish/vendor_completions.d/tau_metric_client.fish"));
        assert!(fish.contains("-l prometheus-config"), "{fish}");
        for rel in DEPLOY {
            assert_eq!(read(&share.join("tau_metric_proxy").join(rel)), read(&crate::root().join("deploy").join(rel)));
        }
        std::fs::remove_dir_all(&dist).unwrap();
    }
}
