//! `tau_metric_client`: lists, reads and tracks the proxy's metrics.
#![forbid(unsafe_code)]

mod output;
mod track;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use client::{GetResult, QueryClient};
use output::Format;

/// tau_metric_proxy client
#[derive(Debug, Parser)]
#[command(name = "tau_metric_client", version)]
#[command(group = clap::ArgGroup::new("action").args(["list", "values", "get", "track", "track_list"]))]
pub(crate) struct Cli {
    /// File to store the result to
    #[arg(short = 'o', long = "output", value_name = "OUTPUT")]
    output: Option<PathBuf>,
    /// Path to the tau_metric_proxy UNIX socket
    #[arg(short = 'u', long = "unix", value_name = "UNIX")]
    unix: Option<PathBuf>,
    /// Sampling frequency in Hz (for data retrieval)
    #[arg(short = 'F', long = "freq", value_name = "FREQ", default_value_t = 1.0, value_parser = parse_freq)]
    freq: f64,
    /// Output format [default: md, json when tracking]
    #[arg(short = 'f', long = "format", value_enum)]
    format: Option<Format>,
    /// List metrics in the tau_metric_proxy
    #[arg(short = 'l', long = "list")]
    list: bool,
    /// List all values in the tau_metric_proxy
    #[arg(short = 'v', long = "values")]
    values: bool,
    /// Get values by name (comma separated)
    #[arg(short = 'g', long = "get", value_name = "GET")]
    get: Option<String>,
    /// Track all non-null counters over time
    #[arg(short = 't', long = "track")]
    track: bool,
    /// Track a given list of values over time (comma separated)
    #[arg(short = 'T', long = "track-list", value_name = "TRACK_LIST")]
    track_list: Option<String>,
}

fn parse_freq(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1_000_000.0 => Ok(f),
        _ => Err(format!("{s:?} is not a frequency in Hz (a number above 0, at most 1000000)")),
    }
}

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
            ExitCode::FAILURE
        }
    }
}

/// A failure worth one line on stderr.
#[derive(Debug)]
pub(crate) enum Failure {
    Proxy(client::Error),
    Io(String, std::io::Error),
    Usage(String),
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
            Failure::Usage(m) => f.write_str(m),
        }
    }
}

impl From<client::Error> for Failure {
    fn from(e: client::Error) -> Failure {
        Failure::Proxy(e)
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let path = client::socket_path(cli.unix.clone());
    let timeout = Duration::from_secs(10);
    if cli.track || cli.track_list.is_some() {
        let format = cli.format.unwrap_or(Format::Json);
        if format == Format::Md {
            client::usage_error(TOOL, "tracking writes json, yaml or txt, not md");
        }
        let names = cli.track_list.as_deref().map(split_names);
        let query = QueryClient::connect(&path, timeout)?;
        return track::run(query, names, cli.freq, format, cli.output.as_deref());
    }
    let format = cli.format.unwrap_or(Format::Md);
    let text = if cli.list {
        output::descs(&QueryClient::connect(&path, timeout)?.list()?, format)
    } else if cli.values {
        output::values(&QueryClient::connect(&path, timeout)?.values()?.1, format)
    } else if let Some(list) = &cli.get {
        let names = split_names(list);
        if names.is_empty() {
            client::usage_error(TOOL, "-g needs at least one metric name");
        }
        match QueryClient::connect(&path, timeout)?.get(&names)? {
            GetResult::Found(values) => output::values(&values, format),
            GetResult::Unknown(names) => {
                return Err(Failure::Usage(format!("no such metric in the proxy: {}", names.join(", "))))
            }
        }
    } else {
        client::usage_error(TOOL, "nothing to do: give one of -l, -v, -g, -t or -T");
    };
    write_output(cli.output.as_deref(), &text)
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
