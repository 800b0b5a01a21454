//! `--report` in its three formats: md (Markdown tables), txt (aligned
//! columns, for a terminal or a job's output file) and json (the merged
//! report, its fields in the order `report.rs` declares them).

use crate::output::Format;
use crate::report::{Report, Row, Section};

/// The report in `format` (md, json or txt; yaml is refused before).
pub(crate) fn render(r: &Report, format: Format) -> String {
    match format {
        Format::Json => crate::output::pretty(r, b"    ") + "\n",
        Format::Md => text(r, true),
        Format::Txt | Format::Yaml => text(r, false),
    }
}

fn text(r: &Report, md: bool) -> String {
    let mut out = String::new();
    let commands: Vec<String> = r.commands.iter().map(|c| format!("{} ({})", c.program, c.collectors)).collect();
    let summary = [
        ("nodes", format!("{} ({})", r.nodes.len(), r.nodes.join(", "))),
        ("ranks", r.ranks.to_string()),
        ("start", utc(r.start)),
        ("end", utc(r.end)),
        ("wall time", format!("{} s", secs(r.wall))),
        ("commands", commands.join(", ")),
        ("collectors", format!("{} ({} without a rank)", r.collectors, r.rankless_collectors)),
    ];
    if md {
        out.push_str(&format!("# Job {}\n\n", r.job));
        for (k, v) in &summary {
            out.push_str(&format!("- {k}: {v}\n"));
        }
    } else {
        out.push_str(&format!("Job {}\n", r.job));
        for (k, v) in &summary {
            out.push_str(&format!("  {:<11} {v}\n", format!("{k}:")));
        }
    }
    heading(&mut out, md, "MPI time per rank");
    if r.rank_rows.is_empty() {
        out.push_str("No rank was seen.\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .rank_rows
            .iter()
            .map(|k| {
                vec![
                    k.node.clone(),
                    k.rank.to_string(),
                    secs(k.wall),
                    secs(k.mpi_time),
                    format!("{:.2}", k.mpi_percent),
                ]
            })
            .collect();
        out.push_str(&table(md, &["node", "rank", "wall (s)", "MPI (s)", "MPI %"], &rows));
    }
    section(&mut out, md, "MPI functions", "function", "% of MPI", &r.mpi);
    section(&mut out, md, "syscalls", "syscall", "% of syscalls", &r.syscalls);
    out
}

fn heading(out: &mut String, md: bool, title: &str) {
    if md {
        out.push_str(&format!("\n## {title}\n\n"));
    } else {
        out.push_str(&format!("\n{title}\n"));
    }
}

fn section(out: &mut String, md: bool, what: &str, column: &str, share: &str, s: &Section) {
    let more = if s.cut > 0 { format!(", and at least {} more the profiles left out", s.cut) } else { String::new() };
    heading(out, md, &format!("Top {what} by time ({} of {}{more})", s.top.len(), s.count));
    if s.top.is_empty() {
        out.push_str(&format!("No {what} were counted.\n"));
        return;
    }
    let rows: Vec<Vec<String>> = s.top.iter().map(row).collect();
    let headers = [column, "calls", "bytes", "time (s)", share, "min (s)", "mean (s)", "max (s)", "max at", "max/mean"];
    out.push_str(&table(md, &headers, &rows));
}

fn row(e: &Row) -> Vec<String> {
    let at = match (&e.time.max_node, e.time.max_rank) {
        (Some(node), Some(rank)) => format!("{node}:{rank}"),
        _ => "-".into(),
    };
    vec![
        e.name.clone(),
        count(e.hits.total),
        count(e.bytes.total),
        secs(e.time.total),
        format!("{:.2}", e.time_percent),
        secs(e.time.min),
        secs(e.time.mean),
        secs(e.time.max),
        at,
        e.imbalance.map_or("-".into(), |i| format!("{i:.2}")),
    ]
}

/// A table; the first column is text, the others right-aligned numbers.
fn table(md: bool, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    if md {
        out.push_str(&format!("| {} |\n", headers.join(" | ")));
        let rule: Vec<&str> = (0..headers.len()).map(|i| if i == 0 { "---" } else { "---:" }).collect();
        out.push_str(&format!("| {} |\n", rule.join(" | ")));
        for r in rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        return out;
    }
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let cells: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
            .collect();
        format!("  {}\n", cells.join("  ").trim_end())
    };
    out.push_str(&line(headers.to_vec()));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A count (hits, bytes) as a whole number.
fn count(v: f64) -> String {
    format!("{v:.0}")
}

/// Seconds with microseconds.
fn secs(v: f64) -> String {
    format!("{v:.6}")
}

/// Seconds since the epoch as a UTC date and time, to the second.
pub(crate) fn utc(ts: f64) -> String {
    if !ts.is_finite() {
        return "-".into();
    }
    let secs = ts.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = client::civil_date(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}
