//! Unit tests of `--report`: merging profiles of several nodes, refusals,
//! the three formats.

use super::*;
use crate::output::Format;
use crate::report_out::{render, utc};
use proxy_core::{CollectorRecord, JobRecord, SeriesValue};

fn mpi(function: &str, hits: f64, bytes: f64, time: f64) -> Vec<SeriesValue> {
    [("mpi_hits_total", hits), ("mpi_size_total", bytes), ("mpi_time_total", time)]
        .into_iter()
        .map(|(name, value)| SeriesValue {
            name: name.into(),
            labels: vec![("function".into(), function.into())],
            value,
        })
        .collect()
}

/// A node's profile: one collector per rank with its barrier time and a
/// Send on the last rank.
fn node(job: &str, node: &str, ranks: std::ops::Range<u32>, barrier: &[f64]) -> (PathBuf, Profile) {
    let last = ranks.end - 1;
    let collectors = ranks
        .clone()
        .zip(barrier)
        .map(|(r, &t)| {
            let mut values = mpi("MPI_Barrier", 2.0, 0.0, t);
            if r == last {
                values.extend(mpi("MPI_Send", 10.0, 80.0, 0.5));
            }
            CollectorRecord { pid: 10 + r, program: "ring".into(), rank: Some(r), start: 100.0, end: 104.0, values }
        })
        .collect();
    let record = JobRecord { job: job.into(), start: 99.0 + f64::from(ranks.start), end: 105.0, collectors };
    (PathBuf::from(format!("{job}@{node}.json")), Profile::from_record(&record, node))
}

fn two_nodes() -> Vec<(PathBuf, Profile)> {
    vec![node("4242", "node01", 0..2, &[0.25, 3.0]), node("4242", "node02", 2..4, &[2.0, 1.0])]
}

#[test]
fn two_nodes_merge_into_one_job() {
    let r = merge(&two_nodes()).unwrap();
    assert_eq!(r.job, "4242");
    assert_eq!(r.nodes, ["node01", "node02"]);
    assert_eq!((r.start, r.end, r.wall), (99.0, 105.0, 6.0));
    assert_eq!((r.ranks, r.collectors, r.rankless_collectors), (4, 4, 0));
    assert_eq!(r.commands, [proxy_core::Command { program: "ring".into(), collectors: 4 }]);
    assert_eq!(r.rank_rows.len(), 4);
    assert_eq!((r.rank_rows[1].node.as_str(), r.rank_rows[1].rank, r.rank_rows[1].mpi_time), ("node01", 1, 3.5));
    assert_eq!(r.rank_rows[1].mpi_percent, 87.5);
    assert_eq!((r.mpi.ranks, r.mpi.count, r.mpi.cut), (4, 2, 0));
    let barrier = &r.mpi.top[0];
    assert_eq!(barrier.name, "MPI_Barrier");
    assert_eq!(
        barrier.time,
        Spread {
            total: 6.25,
            min: 0.25,
            mean: 6.25 / 4.0,
            max: 3.0,
            max_node: Some("node01".into()),
            max_rank: Some(1)
        }
    );
    assert_eq!(barrier.hits.total, 8.0);
    assert_eq!(barrier.imbalance, Some(3.0 / (6.25 / 4.0)));
    // Sent on one rank of each node: the other ranks count as 0.
    let send = &r.mpi.top[1];
    assert_eq!(
        send.hits,
        Spread { total: 20.0, min: 0.0, mean: 5.0, max: 10.0, max_node: Some("node01".into()), max_rank: Some(1) }
    );
    assert_eq!(send.bytes.total, 160.0);
    assert_eq!(r.mpi.time, 7.25);
    assert_eq!(send.time_percent, 100.0 / 7.25);
    assert!(r.syscalls.top.is_empty());
}

#[test]
fn a_function_missing_on_a_node_counts_as_zero_there() {
    let mut files = two_nodes();
    files[1].1.mpi.entries.list.retain(|e| e.name != "MPI_Send");
    let r = merge(&files).unwrap();
    let send = r.mpi.top.iter().find(|e| e.name == "MPI_Send").unwrap();
    assert_eq!((send.hits.total, send.hits.min, send.hits.mean, send.hits.max), (10.0, 0.0, 2.5, 10.0));
}

#[test]
fn profiles_of_other_jobs_or_the_same_node_twice_are_refused() {
    let files = vec![node("4242", "node01", 0..2, &[1.0, 1.0]), node("4243", "node02", 2..4, &[1.0, 1.0])];
    assert_eq!(
        merge(&files).unwrap_err(),
        ReportError::Mixed(
            "profiles of different jobs: 4242@node01.json is job 4242, 4243@node02.json is job 4243; \
             give the profiles of one job"
                .into()
        )
    );
    let mut twice = two_nodes();
    twice.push((PathBuf::from("copy.json"), twice[0].1.clone()));
    assert_eq!(
        merge(&twice).unwrap_err(),
        ReportError::Mixed("two profiles of job 4242 on node node01: 4242@node01.json and copy.json".into())
    );
}

#[test]
fn unreadable_files_are_named() {
    let dir = std::env::temp_dir().join(format!("report-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, b"\xff\xfe").unwrap();
    let missing = dir.join("missing.json");
    let err = |f: &PathBuf| match read(std::slice::from_ref(f)) {
        Err(ReportError::File(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(err(&bad), format!("{}: corrupt profile: not UTF-8 text", bad.display()));
    assert_eq!(err(&missing), format!("cannot read {}: No such file or directory (os error 2)", missing.display()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn txt_report_is_aligned_columns() {
    let text = render(&merge(&two_nodes()).unwrap(), Format::Txt);
    let expected = "\
Job 4242
  nodes:      2 (node01, node02)
  ranks:      4
  start:      1970-01-01 00:01:39 UTC
  end:        1970-01-01 00:01:45 UTC
  wall time:  6.000000 s
  commands:   ring (4)
  collectors: 4 (0 without a rank)

MPI time per rank
  node    rank  wall (s)   MPI (s)  MPI %
  node01     0  4.000000  0.250000   6.25
  node01     1  4.000000  3.500000  87.50
  node02     2  4.000000  2.000000  50.00
  node02     3  4.000000  1.500000  37.50

Top MPI functions by time (2 of 2)
  function     calls  bytes  time (s)  % of MPI   min (s)  mean (s)   max (s)    max at  max/mean
  MPI_Barrier      8      0  6.250000     86.21  0.250000  1.562500  3.000000  node01:1      1.92
  MPI_Send        20    160  1.000000     13.79  0.000000  0.250000  0.500000  node01:1      2.00

Top syscalls by time (0 of 0)
No syscalls were counted.
";
    assert_eq!(text, expected);
}

#[test]
fn md_report_is_tables() {
    let text = render(&merge(&two_nodes()).unwrap(), Format::Md);
    assert!(text.starts_with("# Job 4242\n\n- nodes: 2 (node01, node02)\n- ranks: 4\n"), "{text}");
    assert!(text.contains(
        "\n## MPI time per rank\n\n| node | rank | wall (s) | MPI (s) | MPI % |\n| --- | ---: | ---: | ---: | ---: |\n\
         | node01 | 0 | 4.000000 | 0.250000 | 6.25 |\n"
    ));
    assert!(text
        .contains("| MPI_Send | 20 | 160 | 1.000000 | 13.79 | 0.000000 | 0.250000 | 0.500000 | node01:1 | 2.00 |\n"));
}

#[test]
fn json_report_has_whole_counts() {
    let v: serde_json::Value = serde_json::from_str(&render(&merge(&two_nodes()).unwrap(), Format::Json)).unwrap();
    assert_eq!(v["job"], "4242");
    assert_eq!(v["ranks"], 4);
    assert_eq!(v["mpi"]["top"][1]["hits"]["total"], 20);
    assert_eq!(v["mpi"]["top"][1]["hits"]["total"].to_string(), "20");
    assert_eq!(v["mpi"]["top"][0]["time"]["total"], 6.25);
    assert_eq!(v["mpi"]["top"][0]["time"]["max_node"], "node01");
    assert_eq!(v["syscalls"]["top"], serde_json::json!([]));
}

#[test]
fn dates_are_utc() {
    assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(1_795_530_959.97), "2026-11-24 14:35:59 UTC");
    assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(f64::NAN), "-");
}
