//! `--jobs` and `--job ID`: the node's jobs in the four formats, and the
//! names of a job's series.

use protocol::{JobInfo, JOB_LABEL};
use serde::Serialize;
use serde_json::Value;

use crate::output::{pretty, quoted, title_box, ts_text, Format};

/// A job, with its fields in the order `--jobs` lists them.
#[derive(Serialize)]
struct JobOut<'a> {
    id: &'a str,
    ranks: &'a [u32],
    ranks_connected: u32,
    collectors: u32,
    start: Value,
    end: Value,
    commands: &'a [String],
}

fn ts_json(ts: f64) -> Value {
    ts_text(ts).parse().unwrap_or(Value::Null)
}

/// Ranks as short text: `0-3,8`, or `-` for none.
fn ranks_text(ranks: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ranks.len() {
        let mut j = i;
        while j + 1 < ranks.len() && ranks[j + 1] == ranks[j] + 1 {
            j += 1;
        }
        parts.push(if j > i { format!("{}-{}", ranks[i], ranks[j]) } else { ranks[i].to_string() });
        i = j + 1;
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

fn end_text(end: Option<f64>) -> String {
    end.map_or_else(|| "-".to_owned(), ts_text)
}

/// `--jobs`: running and recently finished jobs, by start.
pub(crate) fn jobs(jobs: &[JobInfo], format: Format) -> String {
    match format {
        Format::Md => {
            let mut out = title_box("Jobs of tau_metric_exporter");
            out.push('\n');
            for j in jobs {
                let state = if j.end.is_some() { "finished" } else { "running" };
                out.push_str(&format!(
                    " • {} ({state}) : ranks {} ({} connected)\n   start {}, end {}\n   commands: {}\n",
                    j.id,
                    ranks_text(&j.ranks),
                    j.ranks_connected,
                    ts_text(j.start),
                    end_text(j.end),
                    j.commands.join(", ")
                ));
            }
            out
        }
        Format::Json => {
            let list: Vec<JobOut> = jobs
                .iter()
                .map(|j| JobOut {
                    id: &j.id,
                    ranks: &j.ranks,
                    ranks_connected: j.ranks_connected,
                    collectors: j.collectors,
                    start: ts_json(j.start),
                    end: j.end.map_or(Value::Null, ts_json),
                    commands: &j.commands,
                })
                .collect();
            pretty(&list, b"    ") + "\n"
        }
        Format::Yaml => {
            if jobs.is_empty() {
                return "[]\n".into();
            }
            jobs.iter()
                .map(|j| {
                    let ranks: Vec<String> = j.ranks.iter().map(u32::to_string).collect();
                    let commands: Vec<String> = j.commands.iter().map(|c| quoted(c)).collect();
                    format!(
                        "- id: {}\n  ranks: [{}]\n  ranks_connected: {}\n  collectors: {}\n  start: {}\n  end: {}\n  commands: [{}]\n",
                        quoted(&j.id),
                        ranks.join(", "),
                        j.ranks_connected,
                        j.collectors,
                        ts_text(j.start),
                        j.end.map_or_else(|| "null".to_owned(), ts_text),
                        commands.join(", ")
                    )
                })
                .collect()
        }
        Format::Txt => {
            let mut out = String::from("# id ranks start end command\n");
            for j in jobs {
                out.push_str(&format!(
                    "{} {} {} {} {}\n",
                    j.id,
                    ranks_text(&j.ranks),
                    ts_text(j.start),
                    end_text(j.end),
                    quoted(&j.commands.join(" "))
                ));
            }
            out
        }
    }
}

/// Whether the series `name` (`family{labels}` as listed) is one of job
/// `id`'s. Label values are escaped in a key, so `,jobid="ID"` cannot
/// occur inside one.
pub(crate) fn is_of_job(name: &str, id: &str) -> bool {
    let Some(labels) = name.strip_prefix(protocol::JOB_PREFIX).and_then(|n| n.split_once('{')).map(|(_, l)| l) else {
        return false;
    };
    let label = format!("{JOB_LABEL}=\"{id}\"");
    let at = |i: usize| labels[i + label.len()..].starts_with([',', '}']);
    labels.match_indices(&label).any(|(i, _)| (i == 0 || labels[..i].ends_with(',')) && at(i))
}

/// The name of the series of job `id` for `name`: itself if it is a
/// job's series, else its per-job twin (`mpi_hits_total{function="MPI_Send"}`
/// → `tau_job_mpi_hits_total{function="MPI_Send",jobid="ID"}`); `None` for a
/// name that does not parse.
pub(crate) fn job_series_name(name: &str, id: &str) -> Option<String> {
    if name.starts_with(protocol::JOB_PREFIX) {
        return Some(name.to_owned());
    }
    let (family, mut labels) = parse_key(name)?;
    labels.push((JOB_LABEL.to_owned(), id.to_owned()));
    labels.sort();
    let mut key = protocol::job_family_name(family);
    key.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(k);
        key.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => key.push_str("\\\\"),
                '"' => key.push_str("\\\""),
                '\n' => key.push_str("\\n"),
                c => key.push(c),
            }
        }
        key.push('"');
    }
    key.push('}');
    Some(key)
}

/// `family{a="x",b="y"}` into the family and its labels (values
/// unescaped).
fn parse_key(name: &str) -> Option<(&str, Vec<(String, String)>)> {
    let Some((family, rest)) = name.split_once('{') else { return Some((name, Vec::new())) };
    let mut rest = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((k.trim().to_owned(), value));
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    Some((family, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(end: Option<f64>) -> JobInfo {
        JobInfo {
            id: "4242".into(),
            ranks: vec![0, 1, 2, 3, 8],
            ranks_connected: 2,
            collectors: 10,
            live_collectors: 4,
            start: 1796122715.5,
            end,
            commands: vec!["tau_metric_proxy_run".into(), "ring".into()],
        }
    }

    #[test]
    fn jobs_in_every_format() {
        let j = [job(None), JobInfo { id: "77".into(), ranks: vec![], ..job(Some(1796122716.25)) }];
        assert_eq!(
            jobs(&j, Format::Txt),
            "# id ranks start end command\n\
             4242 0-3,8 1796122715.500000 - \"tau_metric_proxy_run ring\"\n\
             77 - 1796122715.500000 1796122716.250000 \"tau_metric_proxy_run ring\"\n"
        );
        assert!(jobs(&j, Format::Md).contains(
            " • 4242 (running) : ranks 0-3,8 (2 connected)\n   start 1796122715.500000, end -\n   \
             commands: tau_metric_proxy_run, ring\n"
        ));
        let json: serde_json::Value = serde_json::from_str(&jobs(&j, Format::Json)).unwrap();
        assert_eq!(json[0]["ranks"], serde_json::json!([0, 1, 2, 3, 8]));
        assert_eq!(json[0]["end"], Value::Null);
        assert_eq!(json[1]["end"], serde_json::json!(1796122716.25));
        assert!(jobs(&j[1..], Format::Yaml).starts_with("- id: \"77\"\n  ranks: []\n  ranks_connected: 2\n"));
        assert_eq!(jobs(&[], Format::Yaml), "[]\n");
        assert_eq!(jobs(&[], Format::Json), "[]\n");
    }

    #[test]
    fn a_jobs_series_are_told_by_their_jobid_label() {
        assert!(is_of_job("tau_job_mpi_hits_total{function=\"MPI_Send\",jobid=\"4242\"}", "4242"));
        assert!(is_of_job("tau_job_ranks{jobid=\"4242\"}", "4242"));
        assert!(!is_of_job("tau_job_ranks{jobid=\"42421\"}", "4242"));
        assert!(!is_of_job("tau_job_ranks{jobid=\"4242\"}", "424"));
        assert!(!is_of_job("mpi_hits_total{function=\"MPI_Send\"}", "4242"));
        assert!(!is_of_job("tau_job_x_total{a=\"\\\",jobid=\\\"4242\\\"\"}", "4242"), "inside a value");
    }

    #[test]
    fn node_names_map_to_the_jobs_twins() {
        let got = |n: &str| job_series_name(n, "4242");
        assert_eq!(
            got("mpi_hits_total{function=\"MPI_Send\"}").as_deref(),
            Some("tau_job_mpi_hits_total{function=\"MPI_Send\",jobid=\"4242\"}")
        );
        assert_eq!(
            got("tau_metric_proxy_run_total{operation=\"exec\"}").as_deref(),
            Some("tau_job_run_total{jobid=\"4242\",operation=\"exec\"}")
        );
        assert_eq!(got("x_total").as_deref(), Some("tau_job_x_total{jobid=\"4242\"}"));
        assert_eq!(
            got("w{z=\"a\\\"b\\\\\",a=\"1\"}").as_deref(),
            Some("tau_job_w{a=\"1\",jobid=\"4242\",z=\"a\\\"b\\\\\"}")
        );
        assert_eq!(got("tau_job_ranks{jobid=\"4242\"}").as_deref(), Some("tau_job_ranks{jobid=\"4242\"}"));
        assert_eq!(got("bad{a=\"1\""), None);
    }
}
