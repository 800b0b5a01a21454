//! Unit tests of the end-of-job profile.

use super::*;
use crate::job_record::{CollectorRecord, SeriesValue};

fn series(name: &str, label: &str, key: &str, value: f64) -> SeriesValue {
    SeriesValue { name: name.into(), labels: vec![(label.into(), key.into())], value }
}

/// An MPI function's three series.
fn mpi(function: &str, hits: f64, bytes: f64, time: f64) -> Vec<SeriesValue> {
    vec![
        series("mpi_hits_total", "function", function, hits),
        series("mpi_size_total", "function", function, bytes),
        series("mpi_time_total", "function", function, time),
    ]
}

fn collector(program: &str, rank: Option<u32>, start: f64, end: f64, values: Vec<SeriesValue>) -> CollectorRecord {
    CollectorRecord { pid: 100 + rank.unwrap_or(99), program: program.into(), rank, start, end, values }
}

fn record(collectors: Vec<CollectorRecord>) -> JobRecord {
    JobRecord { job: "4242".into(), start: 10.0, end: 20.0, collectors }
}

/// Four ranks; rank 0 reaches the barrier last, so it waits least.
fn imbalanced() -> JobRecord {
    let barrier = [0.001, 2.0, 2.5, 2.25];
    let mut collectors: Vec<CollectorRecord> = (0..4u32)
        .map(|r| {
            let mut values = mpi("MPI_Barrier", 1.0, 0.0, barrier[r as usize]);
            values.extend(mpi("MPI_Init", 1.0, 0.0, 0.5));
            if r == 2 {
                values.extend(mpi("MPI_Send", 3.0, 24.0, 0.125));
            }
            collector("app", Some(r), 11.0, 15.0 + f64::from(r), values)
        })
        .collect();
    collectors.push(collector(
        "tau_metric_proxy_run",
        None,
        10.0,
        10.5,
        vec![series("tau_metric_proxy_run_total", "operation", "exec", 4.0)],
    ));
    collectors.push(collector(
        "tau_strace",
        None,
        10.0,
        20.0,
        vec![series("strace_hits_total", "scall", "read", 7.0), series("strace_time_total", "scall", "read", 0.5)],
    ));
    record(collectors)
}

fn entry<'a>(family: &'a Family, name: &str) -> &'a Entry {
    family.entries.list.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("no {name} in {family:?}"))
}

#[test]
fn min_mean_max_and_the_rank_of_the_max() {
    let p = Profile::from_record(&imbalanced(), "node01");
    assert_eq!(p.mpi.ranks, 4);
    let b = entry(&p.mpi, "MPI_Barrier");
    assert_eq!(b.hits, Measure { total: 4.0, min: 1.0, mean: 1.0, max: 1.0, max_rank: Some(0) });
    assert_eq!(b.time.min, 0.001);
    assert_eq!(b.time.max, 2.5);
    assert_eq!(b.time.max_rank, Some(2));
    assert_eq!(b.time.total, 0.001 + 2.0 + 2.5 + 2.25);
    assert_eq!(b.time.mean, b.time.total / 4.0);
    // A function only rank 2 called: the other ranks count as 0.
    let s = entry(&p.mpi, "MPI_Send");
    assert_eq!(s.hits, Measure { total: 3.0, min: 0.0, mean: 0.75, max: 3.0, max_rank: Some(2) });
    assert_eq!(s.bytes, Measure { total: 24.0, min: 0.0, mean: 6.0, max: 24.0, max_rank: Some(2) });
    // Most time first.
    let names: Vec<&str> = p.mpi.entries.list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["MPI_Barrier", "MPI_Init", "MPI_Send"]);
    assert_eq!(p.mpi.entries.cut, 0);
}

#[test]
fn rankless_collectors_count_in_totals_and_commands_only() {
    let p = Profile::from_record(&imbalanced(), "node01");
    assert_eq!((p.collectors, p.rankless_collectors), (6, 2));
    assert_eq!(
        p.commands.list,
        [
            Command { program: "app".into(), collectors: 4 },
            Command { program: "tau_metric_proxy_run".into(), collectors: 1 },
            Command { program: "tau_strace".into(), collectors: 1 },
        ]
    );
    // Only the rankless tracer counted syscalls: totals, no spread.
    assert_eq!(p.syscalls.ranks, 0);
    let read = entry(&p.syscalls, "read");
    assert_eq!(read.hits, Measure { total: 7.0, min: 0.0, mean: 0.0, max: 0.0, max_rank: None });
    assert_eq!(read.bytes.total, 0.0);
    assert_eq!(p.ranks.list.len(), 4);
    assert!(p.ranks.list.iter().all(|r| r.syscall_time == 0.0));
    // The run counter is no MPI function nor syscall.
    assert!(p.mpi.entries.list.iter().chain(&p.syscalls.entries.list).all(|e| e.name != "exec"));
}

#[test]
fn a_ranks_collectors_add_up_and_span_its_wall_time() {
    let shim = collector("app", Some(1), 12.0, 18.0, mpi("MPI_Recv", 5.0, 40.0, 1.5));
    let tracer = collector(
        "tau_strace",
        Some(1),
        11.0,
        19.0,
        vec![series("strace_hits_total", "scall", "write", 2.0), series("strace_time_total", "scall", "write", 0.25)],
    );
    let exec_again = collector("app2", Some(1), 13.0, 14.0, mpi("MPI_Recv", 1.0, 8.0, 0.5));
    let p = Profile::from_record(&record(vec![shim, tracer, exec_again]), "n");
    assert_eq!(
        p.ranks.list,
        [RankTime { rank: 1, start: 11.0, end: 19.0, wall: 8.0, mpi_time: 2.0, syscall_time: 0.25 }]
    );
    let recv = entry(&p.mpi, "MPI_Recv");
    assert_eq!(recv.hits, Measure { total: 6.0, min: 6.0, mean: 6.0, max: 6.0, max_rank: Some(1) });
    assert_eq!(entry(&p.syscalls, "write").hits.max_rank, Some(1));
    assert_eq!((p.mpi.ranks, p.syscalls.ranks), (1, 1));
}

#[test]
fn series_without_their_label_or_finite_value_are_left_out() {
    let mut values = mpi("MPI_Bcast", 1.0, 8.0, 0.5);
    values.push(SeriesValue { name: "mpi_hits_total".into(), labels: vec![], value: 3.0 });
    values.push(series("mpi_hits_total", "scall", "read", 3.0));
    values.push(series("mpi_time_total", "function", "MPI_Bcast", f64::INFINITY));
    let p = Profile::from_record(&record(vec![collector("app", Some(0), 1.0, 2.0, values)]), "n");
    assert_eq!(p.mpi.entries.list.len(), 1);
    assert_eq!(p.mpi.entries.list[0].time.total, 0.5);
    assert!(p.to_json().contains("\"MPI_Bcast\""));
}

/// The largest profile: every list at its cap, names at the daemon's
/// default label value limit (1024 bytes).
#[test]
fn lists_are_cut_at_their_caps_and_say_so() {
    let long = |prefix: &str, i: usize| format!("{prefix}{i:04}{}", "x".repeat(1024 - prefix.len() - 4));
    let mut collectors = Vec::new();
    for r in 0..(MAX_RANKS as u32 + 76) {
        collectors.push(collector("app", Some(r), 1.0, 2.0, mpi("MPI_Allreduce", 1.0, 8.0, 0.001)));
    }
    let mut values = Vec::new();
    for i in 0..MAX_FUNCTIONS + 44 {
        values.extend(mpi(&long("MPI_", i), 1.0, 0.0, i as f64));
    }
    for i in 0..MAX_SYSCALLS + 10 {
        values.push(series("strace_time_total", "scall", &long("sc", i), 1.0));
    }
    collectors.push(collector("big", None, 1.0, 2.0, values));
    for i in 0..MAX_COMMANDS + 1 {
        collectors.push(collector(&format!("prog{i}"), None, 1.0, 2.0, vec![]));
    }
    let p = Profile::from_record(&record(collectors), "node01");
    assert_eq!((p.ranks.list.len(), p.ranks.cut), (MAX_RANKS, 76));
    assert_eq!(p.ranks.list.last().map(|r| r.rank), Some(MAX_RANKS as u32 - 1));
    assert_eq!((p.mpi.entries.list.len(), p.mpi.entries.cut), (MAX_FUNCTIONS, 45));
    // The most time first: the cut ones are the functions of least time.
    assert_eq!(p.mpi.entries.list[0].name, long("MPI_", MAX_FUNCTIONS + 43));
    assert_eq!((p.syscalls.entries.list.len(), p.syscalls.entries.cut), (MAX_SYSCALLS, 10));
    assert_eq!(p.syscalls.entries.list[0].name, long("sc", 0), "equal times keep name order");
    // app, big and prog0 ... prog64: the last three are cut.
    assert_eq!((p.commands.list.len(), p.commands.cut), (MAX_COMMANDS, 3));
    assert_eq!(p.commands.list.last().map(|c| c.program.as_str()), Some("prog61"));
    // Statistics are over every rank, listed or not.
    assert_eq!(p.mpi.ranks, MAX_RANKS as u32 + 76);
    let json = p.to_json();
    println!("largest profile: {} bytes", json.len());
    assert!(json.len() < 1 << 20, "{} bytes", json.len());
    assert!(json.contains("\"cut\": 45"));
}

#[test]
fn a_profile_reads_back_as_written() {
    let p = Profile::from_record(&imbalanced(), "node01");
    let json = p.to_json();
    assert!(json.starts_with("{\n  \"kind\": \"tau_metric_proxy profile\",\n  \"schema\": 1,\n  \"job\": \"4242\",\n"));
    assert!(json.ends_with("}\n"));
    assert_eq!(Profile::parse(&json), Ok(p));
    let empty = Profile::from_record(&record(vec![]), "n");
    assert_eq!(Profile::parse(&empty.to_json()), Ok(empty));
}

#[test]
fn corrupt_foreign_and_other_schema_files_are_told_apart() {
    let json = Profile::from_record(&imbalanced(), "node01").to_json();
    let truncated = Profile::parse(&json[..json.len() / 2]).unwrap_err();
    assert!(
        matches!(&truncated, ProfileError::Corrupt(m) if m.starts_with("not JSON: EOF while parsing")),
        "{truncated}"
    );
    assert_eq!(
        Profile::parse("\u{0}\u{1}garbage").unwrap_err().to_string(),
        "corrupt profile: not JSON: expected value at line 1 column 1"
    );
    assert_eq!(
        Profile::parse("[1, 2]").unwrap_err().to_string(),
        "not a tau_metric_proxy profile (a JSON array, where a profile has \"kind\": \"tau_metric_proxy profile\")"
    );
    assert_eq!(
        Profile::parse(r#"{"name": "a_total", "ts": 1.0, "value": 3}"#).unwrap_err(),
        ProfileError::Foreign("a JSON object without \"kind\"".into())
    );
    assert_eq!(
        Profile::parse(r#"{"kind": "darshan log"}"#).unwrap_err(),
        ProfileError::Foreign("\"kind\": \"darshan log\"".into())
    );
    assert_eq!(
        Profile::parse(r#"{"kind": 3}"#).unwrap_err(),
        ProfileError::Foreign("\"kind\" is a JSON number".into())
    );
    let other = json.replacen("\"schema\": 1,", "\"schema\": 2,", 1);
    assert_eq!(Profile::parse(&other).unwrap_err().to_string(), "profile of schema 2, this version reads schema 1");
    let missing = json.replacen("\"node\": \"node01\",", "", 1);
    assert_eq!(Profile::parse(&missing).unwrap_err().to_string(), "corrupt profile: missing field `node`");
    let wrong = json.replacen("\"collectors\": 6,", "\"collectors\": \"six\",", 1);
    assert!(Profile::parse(&wrong)
        .unwrap_err()
        .to_string()
        .starts_with("corrupt profile: invalid type: string \"six\""));
}

#[test]
fn file_names_are_job_at_node() {
    assert_eq!(profile_file_name("4242.1", "node01"), "4242.1@node01.json");
    assert_eq!(profile_file_name("a@b", "c"), "a@b@c.json");
    assert_eq!(profile_file_name("j", "we/ird@host\n"), "j@we_ird_host_.json");
}
