//! `--report FILE...`: the end-of-job profiles of one job (one per node)
//! read and merged into the report `report_out.rs` prints.
//!
//! Merging: totals add up; a family's mean is over the ranks of every node
//! (each node's mean weighted by its ranks); the minimum and maximum are
//! over every node's, the maximum naming its node and rank. A node whose
//! ranks counted in a family but whose profile has no entry for a function
//! counts as 0 for it, as its ranks do within a profile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proxy_core::{Family, Measure, Profile};
use serde::Serialize;

/// How many functions and syscalls the report shows.
pub(crate) const TOP: usize = 20;

/// Why the files cannot be reported on.
#[derive(Debug, PartialEq)]
pub(crate) enum ReportError {
    /// A file that cannot be read or is not a readable profile: one line
    /// naming it.
    File(String),
    /// Files that are not the profiles of one job, one per node.
    Mixed(String),
}

/// One job, over every node given.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) job: String,
    pub(crate) nodes: Vec<String>,
    #[serde(serialize_with = "number")]
    pub(crate) start: f64,
    #[serde(serialize_with = "number")]
    pub(crate) end: f64,
    #[serde(serialize_with = "number")]
    pub(crate) wall: f64,
    pub(crate) collectors: u32,
    pub(crate) rankless_collectors: u32,
    pub(crate) commands: Vec<proxy_core::Command>,
    /// Ranks of all nodes; each has a row in `rank_rows` unless its
    /// profile cut a long rank list.
    pub(crate) ranks: u32,
    pub(crate) rank_rows: Vec<RankRow>,
    pub(crate) mpi: Section,
    pub(crate) syscalls: Section,
}

/// One rank's share of its wall time spent in MPI.
#[derive(Debug, Serialize)]
pub(crate) struct RankRow {
    pub(crate) node: String,
    pub(crate) rank: u32,
    #[serde(serialize_with = "number")]
    pub(crate) wall: f64,
    #[serde(serialize_with = "number")]
    pub(crate) mpi_time: f64,
    /// `mpi_time / wall` in percent (0 for no wall time).
    #[serde(serialize_with = "number")]
    pub(crate) mpi_percent: f64,
}

/// The top MPI functions or syscalls.
#[derive(Debug, Serialize)]
pub(crate) struct Section {
    /// Ranks that counted in this family, over all nodes.
    pub(crate) ranks: u32,
    /// Total time of every function (or syscall), shown or not.
    #[serde(serialize_with = "number")]
    pub(crate) time: f64,
    /// How many functions (or syscalls) the profiles hold, the most any
    /// profile left out (so at least that many more exist), and the top
    /// ones by time.
    pub(crate) count: usize,
    pub(crate) cut: u32,
    pub(crate) top: Vec<Row>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) hits: Spread,
    pub(crate) bytes: Spread,
    pub(crate) time: Spread,
    /// Share of the section's time, in percent.
    #[serde(serialize_with = "number")]
    pub(crate) time_percent: f64,
    /// Time's max / mean over the ranks (null without ranks or time).
    #[serde(serialize_with = "optional_number")]
    pub(crate) imbalance: Option<f64>,
}

/// A merged [`Measure`]: the maximum names its node too.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Spread {
    #[serde(serialize_with = "number")]
    pub(crate) total: f64,
    #[serde(serialize_with = "number")]
    pub(crate) min: f64,
    #[serde(serialize_with = "number")]
    pub(crate) mean: f64,
    #[serde(serialize_with = "number")]
    pub(crate) max: f64,
    pub(crate) max_node: Option<String>,
    pub(crate) max_rank: Option<u32>,
}

/// A number as JSON the way the other modes write values: whole numbers
/// (exact up to 2^53) without a fraction.
fn number<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

fn optional_number<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => number(v, s),
        None => s.serialize_none(),
    }
}

/// Reads every file as a profile.
pub(crate) fn read(files: &[PathBuf]) -> Result<Vec<(PathBuf, Profile)>, ReportError> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read(f).map_err(|e| ReportError::File(format!("cannot read {}: {e}", f.display())))?;
            let text = String::from_utf8(text)
                .map_err(|_| ReportError::File(format!("{}: corrupt profile: not UTF-8 text", f.display())))?;
            let p = Profile::parse(&text).map_err(|e| ReportError::File(format!("{}: {e}", f.display())))?;
            Ok((f.clone(), p))
        })
        .collect()
}

/// Merges the profiles of one job, one per node.
pub(crate) fn merge(profiles: &[(PathBuf, Profile)]) -> Result<Report, ReportError> {
    let Some((first_file, first)) = profiles.first() else {
        return Err(ReportError::Mixed("--report needs at least one profile".into()));
    };
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for (file, p) in profiles {
        if p.job != first.job {
            return Err(ReportError::Mixed(format!(
                "profiles of different jobs: {} is job {}, {} is job {}; give the profiles of one job",
                first_file.display(),
                first.job,
                file.display(),
                p.job
            )));
        }
        if let Some(other) = seen.insert(&p.node, file) {
            return Err(ReportError::Mixed(format!(
                "two profiles of job {} on node {}: {} and {}",
                p.job,
                p.node,
                other.display(),
                file.display()
            )));
        }
    }
    let profiles: Vec<&Profile> = profiles.iter().map(|(_, p)| p).collect();
    let start = profiles.iter().map(|p| p.start).fold(f64::INFINITY, f64::min);
    let end = profiles.iter().map(|p| p.end).fold(f64::NEG_INFINITY, f64::max);
    let mut commands: Vec<proxy_core::Command> = Vec::new();
    for c in profiles.iter().flat_map(|p| &p.commands.list) {
        match commands.iter_mut().find(|m| m.program == c.program) {
            Some(m) => m.collectors += c.collectors,
            None => commands.push(c.clone()),
        }
    }
    let rank_rows = profiles
        .iter()
        .flat_map(|p| {
            p.ranks.list.iter().map(|r| RankRow {
                node: p.node.clone(),
                rank: r.rank,
                wall: r.wall,
                mpi_time: r.mpi_time,
                mpi_percent: if r.wall > 0.0 { 100.0 * r.mpi_time / r.wall } else { 0.0 },
            })
        })
        .collect();
    let ranks_of = |p: &Profile| p.ranks.list.len() as u32 + p.ranks.cut;
    Ok(Report {
        job: first.job.clone(),
        nodes: profiles.iter().map(|p| p.node.clone()).collect(),
        start,
        end,
        wall: (end - start).max(0.0),
        collectors: profiles.iter().map(|p| p.collectors).sum(),
        rankless_collectors: profiles.iter().map(|p| p.rankless_collectors).sum(),
        commands,
        ranks: profiles.iter().map(|p| ranks_of(p)).sum(),
        rank_rows,
        mpi: section(&profiles, |p| &p.mpi),
        syscalls: section(&profiles, |p| &p.syscalls),
    })
}

/// The merged entries of one family, the most time first.
fn section(profiles: &[&Profile], family: impl Fn(&Profile) -> &Family) -> Section {
    let ranks: u32 = profiles.iter().map(|p| family(p).ranks).sum();
    let mut names: BTreeMap<&str, ()> = BTreeMap::new();
    for p in profiles {
        for e in &family(p).entries.list {
            names.insert(&e.name, ());
        }
    }
    let count = names.len();
    let cut = profiles.iter().map(|p| family(p).entries.cut).max().unwrap_or(0);
    let mut rows: Vec<Row> = names
        .keys()
        .map(|name| {
            // Each node's measure of this function, none where it is absent.
            let of = |pick: fn(&proxy_core::Entry) -> &Measure| {
                let parts: Vec<(&str, u32, Option<&Measure>)> = profiles
                    .iter()
                    .map(|p| {
                        let f = family(p);
                        (p.node.as_str(), f.ranks, f.entries.list.iter().find(|e| e.name == *name).map(pick))
                    })
                    .collect();
                combine(&parts)
            };
            let time = of(|e| &e.time);
            let imbalance = (time.max_rank.is_some() && time.mean > 0.0).then(|| time.max / time.mean);
            Row {
                name: (*name).to_owned(),
                hits: of(|e| &e.hits),
                bytes: of(|e| &e.bytes),
                time,
                time_percent: 0.0,
                imbalance,
            }
        })
        .collect();
    let time: f64 = rows.iter().map(|r| r.time.total).sum();
    for r in &mut rows {
        r.time_percent = if time > 0.0 { 100.0 * r.time.total / time } else { 0.0 };
    }
    rows.sort_by(|a, b| {
        b.time.total.total_cmp(&a.time.total).then(b.hits.total.total_cmp(&a.hits.total)).then(a.name.cmp(&b.name))
    });
    rows.truncate(TOP);
    Section { ranks, time, count, cut, top: rows }
}

/// One function's measure over the nodes: `(node, ranks of the family,
/// the node's measure if it has the function)`.
fn combine(parts: &[(&str, u32, Option<&Measure>)]) -> Spread {
    let mut s = Spread { total: 0.0, min: 0.0, mean: 0.0, max: 0.0, max_node: None, max_rank: None };
    let (mut sum, mut ranks, mut first) = (0.0, 0u32, true);
    for &(node, family_ranks, m) in parts {
        let zero = Measure { total: 0.0, min: 0.0, mean: 0.0, max: 0.0, max_rank: None };
        let m = m.unwrap_or(&zero);
        s.total += m.total;
        if family_ranks == 0 {
            continue;
        }
        sum += m.mean * f64::from(family_ranks);
        ranks += family_ranks;
        if first || m.min < s.min {
            s.min = m.min;
        }
        // On a tie, a node that names its rank wins over one without the function.
        if first || m.max > s.max || (m.max == s.max && s.max_rank.is_none()) {
            s.max = m.max;
            s.max_node = Some(node.to_owned());
            s.max_rank = m.max_rank;
        }
        first = false;
    }
    if ranks > 0 {
        s.mean = sum / f64::from(ranks);
    }
    if s.max_rank.is_none() {
        s.max_node = None;
    }
    s
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
