//! `tau_metric_client`: lists, reads and tracks the proxy's metrics.
#![forbid(unsafe_code)]

mod cli;
mod jobs;
mod output;
mod promconfig;
mod report;
mod report_out;
mod shards;
mod track;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use cli::Cli;
use client::{GetResult, QueryClient};
use output::Format;

/// Splits a comma separated list of series names. Commas inside a label
/// set (`a{x="1",y="2"}`) or a quoted label value do not split.
pub(crate) fn split_names(list: &str) -> Vec<String> {
    let (mut out, mut cur) = (Vec::new(), String::new());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in list.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                out.push(std::mem::take(&mut cur).trim().to_owned());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_owned());
    out.retain(|n| !n.is_empty());
    out
}

const TOOL: &str = "tau_metric_client";

fn main() -> ExitCode {
    let cli: Cli = client::parse_args(TOOL);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == Some(std::io::ErrorKind::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{TOOL}: error: {e}");
            match e {
                Failure::Refused(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// A failure worth one line on stderr.
#[derive(Debug)]
pub(crate) enum Failure {
    Proxy(client::Error),
    Io(String, std::io::Error),
    Usage(String),
    /// Arguments that make no sense together (exit status 2, as a usage error).
    Refused(String),
}

impl Failure {
    fn kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Failure::Io(_, e) => Some(e.kind()),
            _ => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Proxy(e) => write!(f, "{e}"),
            Failure::Io(what, e) => write!(f, "{what}: {e}"),
            Failure::Usage(m) | Failure::Refused(m) => f.write_str(m),
        }
    }
}

impl From<client::Error> for Failure {
    fn from(e: client::Error) -> Failure {
        Failure::Proxy(e)
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    if let Some(nodes) = &cli.prometheus_config {
        if let Some(n) = cli.shards {
            let Some(dir) = cli.output.as_deref() else {
                return Err(Failure::Usage("--shards writes several files: name their directory with -o DIR".into()));
            };
            let files = shards::generate(nodes, n, cli.shard_servers.as_deref(), cli.prometheus_rules.as_deref())
                .map_err(Failure::Usage)?;
            return shards::write(dir, &files).map_err(Failure::Usage);
        }
        let text = promconfig::generate(nodes, cli.prometheus_rules.as_deref()).map_err(Failure::Usage)?;
        return write_output(cli.output.as_deref(), &text);
    }
    if !cli.report.is_empty() {
        let format = cli.format.unwrap_or(Format::Md);
        if format == Format::Yaml {
            client::usage_error(TOOL, "--report writes md, json or txt, not yaml");
        }
        let report = report::read(&cli.report).and_then(|p| report::merge(&p)).map_err(|e| match e {
            report::ReportError::File(m) => Failure::Usage(m),
            report::ReportError::Mixed(m) => Failure::Refused(m),
        })?;
        return write_output(cli.output.as_deref(), &report_out::render(&report, format));
    }
    let path = client::socket_path(cli.unix.clone());
    let timeout = Duration::from_secs(10);
    let job = cli.job.as_deref();
    if cli.track || cli.track_list.is_some() {
        let format = cli.format.unwrap_or(Format::Json);
        if format == Format::Md {
            client::usage_error(TOOL, "tracking writes json, yaml or txt, not md");
        }
        let names = cli.track_list.as_deref().map(split_names).map(|n| of_job(n, job)).transpose()?;
        let query = QueryClient::connect(&path, timeout)?;
        return track::run(query, names, job, cli.freq, format, cli.output.as_deref());
    }
    let format = cli.format.unwrap_or(Format::Md);
    let text = if cli.jobs {
        let mut list = QueryClient::connect(&path, timeout)?.jobs()?;
        list.retain(|j| job.is_none_or(|id| j.id == id));
        jobs::jobs(&list, format)
    } else if cli.list {
        let mut descs = QueryClient::connect(&path, timeout)?.list()?;
        descs.retain(|d| job.is_none_or(|id| jobs::is_of_job(&d.name, id)));
        output::descs(&descs, format)
    } else if cli.values {
        let mut values = QueryClient::connect(&path, timeout)?.values()?.1;
        values.retain(|v| job.is_none_or(|id| jobs::is_of_job(&v.name, id)));
        output::values(&values, format)
    } else if let Some(list) = &cli.get {
        let names = split_names(list);
        if names.is_empty() {
            client::usage_error(TOOL, "-g needs at least one metric name");
        }
        let names = of_job(names, job)?;
        match QueryClient::connect(&path, timeout)?.get(&names)? {
            GetResult::Found(values) => output::values(&values, format),
            GetResult::Unknown(names) => {
                return Err(Failure::Usage(format!("no such metric in the proxy: {}", names.join(", "))))
            }
        }
    } else {
        client::usage_error(
            TOOL,
            "nothing to do: give one of -l, -v, -g, -t, -T, --jobs, --prometheus-config or --report",
        );
    };
    write_output(cli.output.as_deref(), &text)
}

/// With `--job ID`, the names of job ID's series for `names`.
fn of_job(names: Vec<String>, job: Option<&str>) -> Result<Vec<String>, Failure> {
    let Some(id) = job else { return Ok(names) };
    names
        .into_iter()
        .map(|n| jobs::job_series_name(&n, id).ok_or_else(|| Failure::Usage(format!("not a series name: {n}"))))
        .collect()
}

fn write_output(path: Option<&std::path::Path>, text: &str) -> Result<(), Failure> {
    match path {
        Some(p) => std::fs::write(p, text).map_err(|e| Failure::Io(format!("cannot write {}", p.display()), e)),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| Failure::Io("cannot write to stdout".into(), e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_names;

    #[test]
    fn names_split_on_top_level_commas_only() {
        assert_eq!(
            split_names(r#"a_total, b{x="1,2",y="3"},c{q="\",{"}"#),
            ["a_total", r#"b{x="1,2",y="3"}"#, r#"c{q="\",{"}"#]
        );
        assert!(split_names(" , ").is_empty());
    }
}
