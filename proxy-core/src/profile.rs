//! The end-of-job profile: what one job did on one node, built from the
//! [`JobRecord`] the store hands over when the job's last collector on the
//! node has left, written by the daemon as one JSON file and read back by
//! `tau_metric_client --report`. Pure: no I/O.
//!
//! The document (schema [`PROFILE_SCHEMA`], described field by field in
//! README's "Profiles") says which job, node and commands it is about, each
//! rank's wall and MPI time, and per MPI function (`mpi_*` families, label
//! `function`) and per syscall (`strace_*`, label `scall`) the totals of
//! hits, bytes and time with their minimum, mean and maximum over the ranks
//! and the rank that had the maximum.
//!
//! Rules:
//! - a collector without a rank (the launcher's run counter outside MPI, a
//!   `tau_strace` attached with `-S`) counts in every total and in the
//!   commands, never in a per-rank figure;
//! - the ranks of a family are the ranks one of whose collectors counted a
//!   series of that family; over them a rank that never called a function
//!   counts as 0 for it, so a rank sitting out a collective shows as the
//!   minimum; ties for the maximum go to the lowest rank;
//! - several collectors of one rank (its shim and its tracer, a process
//!   that `exec`s) add up; a rank's wall time runs from its first
//!   collector's arrival to its last one's departure;
//! - size is bounded: at most [`MAX_FUNCTIONS`] MPI functions and
//!   [`MAX_SYSCALLS`] syscalls are kept (the most time first, then the most
//!   hits, then by name), [`MAX_RANKS`] ranks (the lowest numbers) and
//!   [`MAX_COMMANDS`] commands (first seen first); the statistics are
//!   computed before the cut, and each list's `cut` field says how many
//!   were left out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::job_record::JobRecord;

/// The `kind` field of every profile: a JSON file without it is foreign.
pub const PROFILE_KIND: &str = "tau_metric_proxy profile";
/// The schema this version writes and reads.
pub const PROFILE_SCHEMA: u32 = 1;
/// Most MPI functions one profile keeps.
pub const MAX_FUNCTIONS: usize = 256;
/// Most syscalls one profile keeps.
pub const MAX_SYSCALLS: usize = 256;
/// Most ranks one profile lists in `ranks`.
pub const MAX_RANKS: usize = 1024;
/// Most commands one profile lists.
pub const MAX_COMMANDS: usize = 64;

/// One job on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Always [`PROFILE_KIND`].
    pub kind: String,
    /// Always [`PROFILE_SCHEMA`] when written by this version.
    pub schema: u32,
    pub job: String,
    /// The node's host name.
    pub node: String,
    /// First collector's arrival and last collector's departure, seconds
    /// since the Unix epoch.
    pub start: f64,
    pub end: f64,
    /// Every collector the job had on the node, and those without a rank.
    pub collectors: u32,
    pub rankless_collectors: u32,
    pub commands: Listed<Command>,
    pub ranks: Listed<RankTime>,
    pub mpi: Family,
    pub syscalls: Family,
}

/// A bounded list: the entries kept and how many were left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed<T> {
    pub list: Vec<T>,
    pub cut: u32,
}

/// A program of the job and how many of its collectors there were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub program: String,
    pub collectors: u32,
}

/// One rank's time: its span on the node and what it spent in MPI and in
/// system calls, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankTime {
    pub rank: u32,
    pub start: f64,
    pub end: f64,
    pub wall: f64,
    pub mpi_time: f64,
    pub syscall_time: f64,
}

/// The MPI functions or the syscalls of a job on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// How many ranks counted in this family (what the means divide by).
    pub ranks: u32,
    pub entries: Listed<Entry>,
}

/// One MPI function or syscall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub hits: Measure,
    pub bytes: Measure,
    pub time: Measure,
}

/// A quantity's total over every collector, and its spread over the ranks
/// of the family (all 0 and `max_rank` null when the family has no rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    pub total: f64,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    pub max_rank: Option<u32>,
}

/// Why a text is not a profile this version can read.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileError {
    /// Not JSON, or JSON whose fields are not those of the schema.
    Corrupt(String),
    /// JSON, but not a tau_metric_proxy profile.
    Foreign(String),
    /// A profile of another schema version.
    Schema(u64),
}

impl std::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProfileError::Corrupt(why) => write!(f, "corrupt profile: {why}"),
            ProfileError::Foreign(what) => {
                write!(f, "not a tau_metric_proxy profile ({what}, where a profile has \"kind\": \"{PROFILE_KIND}\")")
            }
            ProfileError::Schema(n) => {
                write!(f, "profile of schema {n}, this version reads schema {PROFILE_SCHEMA}")
            }
        }
    }
}

impl std::error::Error for ProfileError {}

/// The file name of a job's profile on a node: `JOB@NODE.json`. Job ids
/// hold no `/` (the protocol refuses them) and host names no `@`, so the
/// last `@` separates the two; a `/`, an `@` or a control character in the
/// host name becomes `_`.
pub fn profile_file_name(job: &str, node: &str) -> String {
    let node: String = node.chars().map(|c| if c == '/' || c == '@' || c.is_control() { '_' } else { c }).collect();
    format!("{job}@{node}.json")
}

/// Which of the three quantities a family's series counts.
#[derive(Clone, Copy)]
enum Quantity {
    Hits = 0,
    Bytes = 1,
    Time = 2,
}

/// The profile family, quantity and label of a series name.
fn classify(name: &str) -> Option<(usize, Quantity, &'static str)> {
    Some(match name {
        "mpi_hits_total" => (0, Quantity::Hits, "function"),
        "mpi_size_total" => (0, Quantity::Bytes, "function"),
        "mpi_time_total" => (0, Quantity::Time, "function"),
        "strace_hits_total" => (1, Quantity::Hits, "scall"),
        "strace_size_total" => (1, Quantity::Bytes, "scall"),
        "strace_time_total" => (1, Quantity::Time, "scall"),
        _ => return None,
    })
}

/// One function's sums while the record is read.
#[derive(Default)]
struct EntryAcc {
    total: [f64; 3],
    per_rank: BTreeMap<u32, [f64; 3]>,
}

#[derive(Default)]
struct FamilyAcc {
    ranks: BTreeSet<u32>,
    entries: BTreeMap<String, EntryAcc>,
}

impl FamilyAcc {
    fn finish(self, max: usize) -> Family {
        let ranks: Vec<u32> = self.ranks.into_iter().collect();
        let mut entries: Vec<Entry> = self
            .entries
            .into_iter()
            .map(|(name, acc)| {
                let measure = |q: Quantity| {
                    spread(acc.total[q as usize], &ranks, |r| acc.per_rank.get(&r).map_or(0.0, |v| v[q as usize]))
                };
                Entry {
                    hits: measure(Quantity::Hits),
                    bytes: measure(Quantity::Bytes),
                    time: measure(Quantity::Time),
                    name,
                }
            })
            .collect();
        entries.sort_by(|a, b| {
            b.time.total.total_cmp(&a.time.total).then(b.hits.total.total_cmp(&a.hits.total)).then(a.name.cmp(&b.name))
        });
        Family { ranks: ranks.len() as u32, entries: cut(entries, max) }
    }
}

/// Minimum, mean and maximum of `value` over `ranks` (ascending), the first
/// rank with the maximum.
fn spread(total: f64, ranks: &[u32], value: impl Fn(u32) -> f64) -> Measure {
    let mut m = Measure { total, min: 0.0, mean: 0.0, max: 0.0, max_rank: None };
    let mut sum = 0.0;
    for (i, &r) in ranks.iter().enumerate() {
        let v = value(r);
        sum += v;
        if i == 0 || v < m.min {
            m.min = v;
        }
        if i == 0 || v > m.max {
            m.max = v;
            m.max_rank = Some(r);
        }
    }
    if !ranks.is_empty() {
        m.mean = sum / ranks.len() as f64;
    }
    m
}

fn cut<T>(mut list: Vec<T>, max: usize) -> Listed<T> {
    let cut = list.len().saturating_sub(max) as u32;
    list.truncate(max);
    Listed { list, cut }
}

impl Profile {
    /// The profile of `record` on the node named `node`.
    pub fn from_record(record: &JobRecord, node: &str) -> Profile {
        let mut families = [FamilyAcc::default(), FamilyAcc::default()];
        let mut ranks: BTreeMap<u32, RankTime> = BTreeMap::new();
        let mut commands: Vec<Command> = Vec::new();
        let mut rankless = 0u32;
        for c in &record.collectors {
            match commands.iter_mut().find(|cmd| cmd.program == c.program) {
                Some(cmd) => cmd.collectors += 1,
                None => commands.push(Command { program: c.program.clone(), collectors: 1 }),
            }
            let mut rank_time = match c.rank {
                Some(r) => {
                    let t = ranks.entry(r).or_insert(RankTime {
                        rank: r,
                        start: c.start,
                        end: c.end,
                        wall: 0.0,
                        mpi_time: 0.0,
                        syscall_time: 0.0,
                    });
                    t.start = t.start.min(c.start);
                    t.end = t.end.max(c.end);
                    Some(t)
                }
                None => {
                    rankless += 1;
                    None
                }
            };
            for v in &c.values {
                let Some((family, quantity, label)) = classify(&v.name) else { continue };
                let Some((_, key)) = v.labels.iter().find(|(k, _)| k == label) else { continue };
                if !v.value.is_finite() {
                    continue;
                }
                let fam = &mut families[family];
                let acc = fam.entries.entry(key.clone()).or_default();
                acc.total[quantity as usize] += v.value;
                if let Some(r) = c.rank {
                    fam.ranks.insert(r);
                    acc.per_rank.entry(r).or_default()[quantity as usize] += v.value;
                    if let (Quantity::Time, Some(t)) = (quantity, rank_time.as_deref_mut()) {
                        if family == 0 {
                            t.mpi_time += v.value;
                        } else {
                            t.syscall_time += v.value;
                        }
                    }
                }
            }
        }
        let ranks: Vec<RankTime> = ranks
            .into_values()
            .map(|mut t| {
                t.wall = (t.end - t.start).max(0.0);
                t
            })
            .collect();
        let [mpi, syscalls] = families;
        Profile {
            kind: PROFILE_KIND.into(),
            schema: PROFILE_SCHEMA,
            job: record.job.clone(),
            node: node.into(),
            start: record.start,
            end: record.end,
            collectors: record.collectors.len() as u32,
            rankless_collectors: rankless,
            commands: cut(commands, MAX_COMMANDS),
            ranks: cut(ranks, MAX_RANKS),
            mpi: mpi.finish(MAX_FUNCTIONS),
            syscalls: syscalls.finish(MAX_SYSCALLS),
        }
    }

    /// The profile as a JSON document (indented, ending with a newline).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a profile holds only finite numbers and strings");
        text.push('\n');
        text
    }

    /// Reads a profile back, telling a corrupt file from a foreign one and
    /// from one of another schema.
    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ProfileError::Corrupt(format!("not JSON: {e}")))?;
        let Some(object) = doc.as_object() else {
            return Err(ProfileError::Foreign(format!("a JSON {}", json_type(&doc))));
        };
        match object.get("kind") {
            Some(serde_json::Value::String(k)) if k == PROFILE_KIND => {}
            Some(serde_json::Value::String(k)) => return Err(ProfileError::Foreign(format!("\"kind\": {k:?}"))),
            Some(other) => return Err(ProfileError::Foreign(format!("\"kind\" is a JSON {}", json_type(other)))),
            None => return Err(ProfileError::Foreign("a JSON object without \"kind\"".into())),
        }
        match object.get("schema").and_then(|s| s.as_u64()) {
            Some(n) if n == u64::from(PROFILE_SCHEMA) => {}
            Some(n) => return Err(ProfileError::Schema(n)),
            None => return Err(ProfileError::Corrupt("\"schema\" is missing or not a whole number".into())),
        }
        serde_json::from_value(doc).map_err(|e| ProfileError::Corrupt(e.to_string()))
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests;
