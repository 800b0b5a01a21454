//! The JSON the live page polls: `/api/values`, the MPI and syscall totals
//! by function and by syscall of the node or of one job (`?job=ID`), and
//! `/api/jobs`, the jobs the store keeps. Built from a [`Scrape`], the
//! values copied out of the store under its lock (and the jobs listed
//! under the same lock), so nothing here holds the lock and nothing here
//! changes the store. No I/O: a request and the store in, a response out.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use protocol::JobInfo;
use proxy_core::{labels_of_key, Scrape, Store};
use serde::Serialize;

use super::response::{error, Body, Response};

/// The MPI families, by quantity, and their label.
const MPI: [(&str, Quantity); 3] =
    [("mpi_hits_total", Quantity::Hits), ("mpi_size_total", Quantity::Size), ("mpi_time_total", Quantity::Time)];
const MPI_LABEL: &str = "function";
/// The syscall families, by quantity, and their label.
const SYSCALLS: [(&str, Quantity); 4] = [
    ("strace_hits_total", Quantity::Hits),
    ("strace_size_total", Quantity::Size),
    ("strace_time_total", Quantity::Time),
    ("strace_errors_total", Quantity::Errors),
];
const SYSCALL_LABEL: &str = "scall";
/// The label naming the job of a per-job series, whose families are the
/// shared ones' twins: `tau_job_` and the node family's name.
const JOB_LABEL: &str = "jobid";
const JOB_PREFIX: &str = "tau_job_";
/// A gauge every job kept has, running or finished.
const JOB_START: &str = "tau_job_start_time_seconds";

#[derive(Debug, Clone, Copy)]
enum Quantity {
    Hits,
    Size,
    Time,
    Errors,
}

/// One function's or syscall's totals; a quantity no series counts is
/// left out (a function without a byte rule has no `size`).
#[derive(Debug, Default, Serialize, PartialEq)]
pub(super) struct Totals {
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "number")]
    pub(super) hits: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "number")]
    pub(super) size: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "number")]
    pub(super) time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "number")]
    pub(super) errors: Option<f64>,
}

/// A count as an integer (`600`, not `600.0`) when it is one that a
/// browser's numbers hold exactly; any other value as a float.
fn number<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match *v {
        Some(v) if v.fract() == 0.0 && (0.0..9.007_199_254_740_992e15).contains(&v) => s.serialize_u64(v as u64),
        Some(v) => s.serialize_f64(v),
        None => s.serialize_none(),
    }
}

impl Totals {
    fn add(&mut self, q: Quantity, v: f64) {
        let slot = match q {
            Quantity::Hits => &mut self.hits,
            Quantity::Size => &mut self.size,
            Quantity::Time => &mut self.time,
            Quantity::Errors => &mut self.errors,
        };
        *slot = Some(slot.unwrap_or(0.0) + v);
    }
}

/// What the store says besides the values, read under the same lock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counts {
    pub(super) collectors: usize,
    pub(super) series: usize,
}

/// The answer of `/api/values`.
#[derive(Debug, Serialize)]
pub(super) struct Values<'a> {
    /// When the values were read, seconds since the Unix epoch.
    pub(super) time: f64,
    pub(super) node: &'a str,
    /// The job whose totals these are; none for the node's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) job: Option<&'a str>,
    pub(super) collectors: usize,
    pub(super) series: usize,
    pub(super) mpi: BTreeMap<String, Totals>,
    pub(super) syscalls: BTreeMap<String, Totals>,
}

/// Sums the series of `families` (or of their per-job twins, of `job`
/// only) by their `label`, as `sum by (label)` does; series without the
/// label are left out.
fn by_label(
    scrape: &Scrape,
    families: &[(&str, Quantity)],
    label: &str,
    job: Option<&str>,
) -> BTreeMap<String, Totals> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for &(family, q) in families {
        let twin;
        let family = match job {
            Some(_) => {
                twin = format!("{JOB_PREFIX}{family}");
                twin.as_str()
            }
            None => family,
        };
        for (key, v) in scrape.family(family) {
            let labels = labels_of_key(key);
            if job.is_some_and(|j| !labels.iter().any(|(k, v)| k == JOB_LABEL && v == j)) {
                continue;
            }
            if let Some((_, name)) = labels.into_iter().find(|(k, _)| k == label) {
                out.entry(name).or_default().add(q, v);
            }
        }
    }
    out
}

/// Whether the store keeps job `id` (running, or finished within its
/// retention): it has the job's start gauge.
pub(super) fn has_job(scrape: &Scrape, id: &str) -> bool {
    scrape.family(JOB_START).any(|(key, _)| labels_of_key(key).iter().any(|(k, v)| k == JOB_LABEL && v == id))
}

/// The totals in `scrape`, read at `time`, of the node or of `job`.
pub(super) fn values<'a>(
    scrape: &Scrape,
    counts: Counts,
    node: &'a str,
    time: f64,
    job: Option<&'a str>,
) -> Values<'a> {
    Values {
        time,
        node,
        job,
        collectors: counts.collectors,
        series: counts.series,
        mpi: by_label(scrape, &MPI, MPI_LABEL, job),
        syscalls: by_label(scrape, &SYSCALLS, SYSCALL_LABEL, job),
    }
}

/// One job of `/api/jobs`.
#[derive(Debug, Serialize, PartialEq)]
pub(super) struct Job {
    pub(super) id: String,
    /// Every rank seen on this node, in order.
    pub(super) ranks: Vec<u32>,
    pub(super) ranks_connected: u32,
    pub(super) collectors: u32,
    pub(super) live_collectors: u32,
    /// When its first collector came and its last one left (none while it
    /// runs), seconds since the Unix epoch.
    pub(super) start: f64,
    pub(super) end: Option<f64>,
    pub(super) commands: Vec<String>,
    /// Seconds its ranks spent in MPI calls on this node, all functions.
    pub(super) mpi_time: f64,
}

/// The answer of `/api/jobs`.
#[derive(Debug, Serialize)]
pub(super) struct Jobs<'a> {
    pub(super) time: f64,
    pub(super) node: &'a str,
    /// By start, oldest first.
    pub(super) jobs: Vec<Job>,
}

/// The jobs the store listed, with their MPI time from `scrape`.
pub(super) fn jobs<'a>(scrape: &Scrape, listed: Vec<JobInfo>, node: &'a str, time: f64) -> Jobs<'a> {
    let mut mpi_time: BTreeMap<String, f64> = BTreeMap::new();
    for (key, v) in scrape.family(&format!("{JOB_PREFIX}mpi_time_total")) {
        if let Some((_, id)) = labels_of_key(key).into_iter().find(|(k, _)| k == JOB_LABEL) {
            *mpi_time.entry(id).or_default() += v;
        }
    }
    let jobs = listed
        .into_iter()
        .map(|j| Job {
            mpi_time: mpi_time.get(&j.id).copied().unwrap_or(0.0),
            id: j.id,
            ranks: j.ranks,
            ranks_connected: j.ranks_connected,
            collectors: j.collectors,
            live_collectors: j.live_collectors,
            start: j.start,
            end: j.end,
            commands: j.commands,
        })
        .collect();
    Jobs { time, node, jobs }
}

/// A request of the API, as the loop parsed it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Request<'a> {
    pub(super) path: &'a str,
    pub(super) query: &'a str,
    /// A HEAD: nothing is read of the store, nothing rendered.
    pub(super) head: bool,
    /// Now, seconds since the Unix epoch.
    pub(super) time: f64,
}

/// Answers `/api/values` (`?job=ID`: of that job) and `/api/jobs`. The
/// store is locked only to copy the values out (into `scrape`, reused) and
/// list the jobs, as for a scrape of `/metrics`; the JSON is written after
/// the lock is released. Nothing is counted or changed.
pub(super) fn serve(req: Request<'_>, store: &Mutex<Store>, scrape: &mut Scrape, node: &str) -> Response {
    let params = match query_params(req.query) {
        Ok(p) => p,
        Err(message) => return error(400, message),
    };
    let job = match (req.path, params.as_slice()) {
        ("/api/values", []) | ("/api/jobs", []) => None,
        ("/api/values", [(name, id)]) if name == "job" => Some(id.as_str()),
        ("/api/values", _) => return error(400, "/api/values takes one parameter at most: job=ID"),
        _ => return error(400, "/api/jobs takes no parameters"),
    };
    let json = |body| Response {
        status: 200,
        content_type: "application/json",
        extra: "Cache-Control: no-store\r\n".into(),
        body,
    };
    if req.head {
        return json(Body::Unrendered);
    }
    let (counts, listed) = {
        let mut st = store.lock();
        st.scrape(scrape);
        let counts = Counts { collectors: st.connected_collectors(), series: st.series_count() };
        (counts, if req.path == "/api/jobs" { st.jobs() } else { Vec::new() })
    };
    let time = req.time;
    if req.path == "/api/jobs" {
        return json(Body::Bytes(to_json(&jobs(scrape, listed, node, time))));
    }
    if let Some(id) = job {
        if !has_job(scrape, id) {
            return error(404, &format!("no such job on this node: {id}"));
        }
    }
    json(Body::Bytes(to_json(&values(scrape, counts, node, time, job))))
}

/// The parameters of a query string (`a=1&b=x%20y`), percent-decoded, `+`
/// a space; a malformed one is refused.
fn query_params(query: &str) -> Result<Vec<(String, String)>, &'static str> {
    let decode = |s: &str| -> Result<String, &'static str> {
        let mut out = Vec::with_capacity(s.len());
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            out.push(match b {
                b'+' => b' ',
                b'%' => {
                    let hex = [bytes.next(), bytes.next()];
                    let digits: Option<Vec<u8>> =
                        hex.iter().map(|d| d.and_then(|d| (d as char).to_digit(16)).map(|d| d as u8)).collect();
                    match digits.as_deref() {
                        Some([hi, lo]) => hi * 16 + lo,
                        _ => return Err("malformed percent-encoding in the query"),
                    }
                }
                b => b,
            });
        }
        String::from_utf8(out).map_err(|_| "the query is not UTF-8")
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// `value` as JSON bytes.
pub(super) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Desc, Identity, Sample, Scale, Value};
    use proxy_core::{Limits, Store};

    #[test]
    fn query_parameters_are_percent_decoded_and_malformed_ones_refused() {
        let q = |s: &str| query_params(s);
        assert_eq!(q(""), Ok(vec![]));
        assert_eq!(q("job=4242"), Ok(vec![("job".into(), "4242".into())]));
        assert_eq!(q("job=a%2Eb+c%3d&x"), Ok(vec![("job".into(), "a.b c=".into()), ("x".into(), "".into())]));
        assert_eq!(q("job=%zz"), Err("malformed percent-encoding in the query"));
        assert_eq!(q("job=%4"), Err("malformed percent-encoding in the query"));
        assert_eq!(q("job=%ff"), Err("the query is not UTF-8"));
    }

    #[test]
    fn values_sum_each_function_and_syscall_over_other_labels() {
        let mut st = Store::new(Limits::default());
        let (a, _) = st.hello(Identity { pid: 1, start_time: 1, nonce: 1, program: "t".into() });
        let descs = [
            Desc::counter("mpi_hits_total", &[("function", "MPI_Send")], "h"),
            Desc::counter("mpi_time_total", &[("function", "MPI_Send")], "t").with_scale(Scale::Nano),
            Desc::counter("strace_hits_total", &[("scall", "read")], "h"),
            Desc::counter("strace_hits_total", &[("scall", "read"), ("x", "y")], "h"),
            Desc::counter("strace_hits_total", &[("other", "read")], "h"),
            Desc::counter("other_total", &[("function", "MPI_Send")], "o"),
        ];
        for (i, d) in descs.iter().enumerate() {
            st.register(a, i as u32, d).unwrap();
        }
        let samples: Vec<Sample> = [4, 1_500_000_000, 2, 3, 100, 7]
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample { id: i as u32, value: Value::Int(v) })
            .collect();
        assert!(st.update(a, &samples, 1.0).is_empty());
        let mut scrape = Scrape::default();
        st.scrape(&mut scrape);
        let v = values(&scrape, Counts { collectors: 1, series: 6 }, "n1", 12.5, None);
        assert_eq!(
            String::from_utf8(to_json(&v)).unwrap(),
            "{\"time\":12.5,\"node\":\"n1\",\"collectors\":1,\"series\":6,\
             \"mpi\":{\"MPI_Send\":{\"hits\":4,\"time\":1.5}},\
             \"syscalls\":{\"read\":{\"hits\":5}}}\n"
        );
    }
}
