//! The JSON the live page polls: `/api/values`, the node's MPI and syscall
//! totals by function and by syscall. Built from a [`Scrape`], the values
//! copied out of the store under its lock, so nothing here holds the lock
//! and nothing here changes the store. No I/O: a scrape in, bytes out.

use std::collections::BTreeMap;

use proxy_core::{labels_of_key, Scrape};
use serde::Serialize;

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
    pub(super) collectors: usize,
    pub(super) series: usize,
    pub(super) mpi: BTreeMap<String, Totals>,
    pub(super) syscalls: BTreeMap<String, Totals>,
}

/// Sums the series of `families` by their `label`, as `sum by (label)`
/// does; series without the label are left out.
fn by_label(scrape: &Scrape, families: &[(&str, Quantity)], label: &str) -> BTreeMap<String, Totals> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for &(family, q) in families {
        for (key, v) in scrape.family(family) {
            let labels = labels_of_key(key);
            if let Some((_, name)) = labels.into_iter().find(|(k, _)| k == label) {
                out.entry(name).or_default().add(q, v);
            }
        }
    }
    out
}

/// The node's totals in `scrape`, read at `time`.
pub(super) fn values<'a>(scrape: &Scrape, counts: Counts, node: &'a str, time: f64) -> Values<'a> {
    Values {
        time,
        node,
        collectors: counts.collectors,
        series: counts.series,
        mpi: by_label(scrape, &MPI, MPI_LABEL),
        syscalls: by_label(scrape, &SYSCALLS, SYSCALL_LABEL),
    }
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
        let v = values(&scrape, Counts { collectors: 1, series: 6 }, "n1", 12.5);
        assert_eq!(
            String::from_utf8(to_json(&v)).unwrap(),
            "{\"time\":12.5,\"node\":\"n1\",\"collectors\":1,\"series\":6,\
             \"mpi\":{\"MPI_Send\":{\"hits\":4,\"time\":1.5}},\
             \"syscalls\":{\"read\":{\"hits\":5}}}\n"
        );
    }
}
