//! Per-syscall totals shared between the tracing thread (the only writer)
//! and the pushing thread, and the export of those totals as
//! `strace_hits_total`, `strace_size_total`, `strace_time_total` and
//! `strace_errors_total` (and the eBPF engine's losses,
//! `strace_lost_threads_total` and `strace_lost_calls_total`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use client::{MetricId, PushState, Pusher};
use protocol::{Desc, Kind, Scale};

use crate::syscall::{Catalog, Slot};

/// Room for `syscall_N` names beyond the tables (ptrace engine): the calls
/// of further numbers are counted as lost (a tracee would need this many
/// distinct invalid numbers).
pub(crate) const EXTRA_SLOTS: usize = 1024;

#[derive(Debug, Default)]
struct Cell {
    hits: AtomicU64,
    bytes: AtomicU64,
    ns: AtomicU64,
    errors: AtomicU64,
}

/// One syscall's totals at a point in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) io: bool,
    pub(crate) hits: u64,
    pub(crate) bytes: u64,
    pub(crate) ns: u64,
    /// Calls that returned an error (`strace -c`'s errors column).
    pub(crate) errors: u64,
}

#[derive(Debug)]
pub(crate) struct Counts {
    cells: Box<[Cell]>,
    /// Calls completed, all syscalls together.
    total: AtomicU64,
    /// Calls completed whose number found no room (beyond the extra slots).
    lost_calls: AtomicU64,
    /// Name and I/O flag per slot, extended when unknown numbers appear.
    names: Mutex<Vec<(String, bool)>>,
}

impl Counts {
    pub(crate) fn new(known: usize) -> Counts {
        Counts {
            cells: (0..known + EXTRA_SLOTS).map(|_| Cell::default()).collect(),
            total: AtomicU64::new(0),
            lost_calls: AtomicU64::new(0),
            names: Mutex::new(Vec::new()),
        }
    }

    /// Makes the catalog's names (including new `syscall_N`) visible to
    /// the exporter.
    pub(crate) fn publish_names(&self, catalog: &Catalog) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        for s in names.len()..catalog.len().min(self.cells.len()) {
            names.push((catalog.name(s as Slot).to_owned(), catalog.is_io(s as Slot)));
        }
    }

    /// Adds one completed call; a call without a slot (its number found no
    /// room) is counted as lost. Only the tracing thread writes, so plain
    /// load/store pairs suffice (no locked read-modify-write).
    pub(crate) fn record(&self, slot: Slot, bytes: u64, ns: u64, failed: bool) {
        let Some(c) = self.cells.get(slot as usize) else {
            self.lost_calls.store(self.lost_calls.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            return;
        };
        let add = |a: &AtomicU64, v: u64| a.store(a.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
        if bytes > 0 {
            add(&c.bytes, bytes);
        }
        add(&c.ns, ns);
        if failed {
            add(&c.errors, 1);
        }
        // Hits last: a reader seeing a hit also sees its time and bytes.
        c.hits.store(c.hits.load(Ordering::Relaxed) + 1, Ordering::Release);
        self.total.store(self.total.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Calls completed so far, all syscalls together.
    pub(crate) fn total_hits(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// What could not be counted: calls of numbers beyond the extra slots
    /// (the ptrace engine follows every thread).
    pub(crate) fn lost(&self) -> Lost {
        Lost { threads: 0, calls: self.lost_calls.load(Ordering::Relaxed) }
    }

    /// Totals of every syscall seen at least once.
    pub(crate) fn snapshot(&self) -> Vec<Row> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows = Vec::new();
        for (i, (name, io)) in names.iter().enumerate() {
            let c = &self.cells[i];
            let hits = c.hits.load(Ordering::Acquire);
            if hits == 0 {
                continue;
            }
            rows.push(Row {
                name: name.clone(),
                io: *io,
                hits,
                bytes: c.bytes.load(Ordering::Relaxed),
                ns: c.ns.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
            });
        }
        rows
    }
}

/// What an engine's bounded tables could not hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Lost {
    /// Threads not followed: the eBPF engine's thread map was full when
    /// they were created (or marked).
    pub(crate) threads: u64,
    /// Calls not counted: the room for numbers outside the tables was full
    /// when their number first came.
    pub(crate) calls: u64,
}

/// The bounds an engine counts within, as its notices name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Whether they are the eBPF engine's maps (else the ptrace engine's
    /// table of names).
    pub(crate) bpf: bool,
    /// Threads followed at once (`--max-threads`, eBPF engine).
    pub(crate) threads: u64,
    /// Distinct numbers outside the tables that are counted.
    pub(crate) numbers: u64,
}

impl Bounds {
    /// The ptrace engine's: every thread, [`EXTRA_SLOTS`] numbers.
    pub(crate) fn ptrace() -> Bounds {
        Bounds { bpf: false, threads: u64::MAX, numbers: EXTRA_SLOTS as u64 }
    }
}

/// The lines saying that a bound was reached, once each: those of the
/// losses that `now` has and `before` had not.
pub(crate) fn loss_notices(before: Lost, now: Lost, bounds: Bounds) -> Vec<String> {
    let map = if bounds.bpf { "eBPF map full: " } else { "" };
    let mut lines = Vec::new();
    if now.threads > 0 && before.threads == 0 {
        lines.push(format!(
            "eBPF thread map full (--max-threads {}): further threads are not counted (strace_lost_threads_total)",
            bounds.threads
        ));
    }
    if now.calls > 0 && before.calls == 0 {
        lines.push(format!(
            "{map}{} syscall numbers outside the tables counted, calls of further ones are not \
             (strace_lost_calls_total)",
            bounds.numbers
        ));
    }
    lines
}

/// The help of `strace_lost_calls_total` (the proxy declares the same).
const LOST_CALLS_HELP: &str =
    "System calls not counted: the tracer's room for syscall numbers outside the tables was full";

/// Series ids of one syscall in the pusher.
struct Ids {
    hits: MetricId,
    size: Option<MetricId>,
    time: MetricId,
    /// Registered with the first error, as `strace -c` leaves the errors
    /// column blank for calls that never failed.
    errors: Option<MetricId>,
}

/// Turns snapshots into cumulative totals in a [`Pusher`].
pub(crate) struct Exporter {
    pusher: Pusher,
    ids: std::collections::HashMap<String, Ids>,
    /// `strace_lost_threads_total` and `strace_lost_calls_total`,
    /// registered with the first loss.
    lost: [Option<MetricId>; 2],
    /// The losses already said.
    said: Lost,
}

impl Exporter {
    pub(crate) fn new(pusher: Pusher) -> Exporter {
        Exporter { pusher, ids: std::collections::HashMap::new(), lost: [None, None], said: Lost::default() }
    }

    /// Copies an engine's losses (what its full tables refused) into the
    /// pusher; each series appears with its first loss, which is said once
    /// on stderr, naming the bound reached.
    pub(crate) fn update_lost(&mut self, lost: Lost, bounds: Bounds) {
        for line in loss_notices(self.said, lost, bounds) {
            log::warn!("{line}");
        }
        self.said = Lost { threads: self.said.threads.max(lost.threads), calls: self.said.calls.max(lost.calls) };
        let series = [
            (
                "strace_lost_threads_total",
                "Threads not followed by the eBPF engine: its thread map was full",
                lost.threads,
            ),
            ("strace_lost_calls_total", LOST_CALLS_HELP, lost.calls),
        ];
        for (id, (name, help, total)) in self.lost.iter_mut().zip(series) {
            if total == 0 {
                continue;
            }
            let id = *id.get_or_insert_with(|| self.pusher.register(Desc::counter(name, &[], help)));
            self.pusher.set_total(id, total);
        }
    }

    /// Copies the totals into the pusher (registering new syscalls).
    pub(crate) fn update(&mut self, rows: &[Row]) {
        for r in rows {
            if !self.ids.contains_key(&r.name) {
                let labels = [("scall", r.name.as_str())];
                let ids = Ids {
                    hits: self.pusher.register(Desc::counter(
                        "strace_hits_total",
                        &labels,
                        "Completed system calls, per syscall name",
                    )),
                    size: r.io.then(|| {
                        self.pusher.register(Desc::counter(
                            "strace_size_total",
                            &labels,
                            "Bytes moved by I/O system calls (their positive return values)",
                        ))
                    }),
                    time: self.pusher.register(Desc::new(
                        "strace_time_total",
                        &labels,
                        "Seconds spent inside system calls",
                        Kind::Counter,
                        Scale::Nano,
                    )),
                    errors: None,
                };
                self.ids.insert(r.name.clone(), ids);
            }
            if r.errors > 0 && self.ids[&r.name].errors.is_none() {
                let labels = [("scall", r.name.as_str())];
                let id = self.pusher.register(Desc::counter(
                    "strace_errors_total",
                    &labels,
                    "Completed system calls that returned an error, per syscall name",
                ));
                self.ids.get_mut(&r.name).expect("registered above").errors = Some(id);
            }
            let ids = &self.ids[&r.name];
            self.pusher.set_total(ids.hits, r.hits);
            if let Some(errors) = ids.errors {
                self.pusher.set_total(errors, r.errors);
            }
            if let Some(size) = ids.size {
                self.pusher.set_total(size, r.bytes);
            }
            self.pusher.set_total(ids.time, r.ns);
        }
    }

    pub(crate) fn flush(&mut self) -> PushState {
        let state = self.pusher.flush();
        for e in self.pusher.take_errors() {
            log::warn!("tau_metric_proxy refused an update: {e}");
        }
        state
    }

    pub(crate) fn finish(self) -> PushState {
        self.pusher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lists_only_seen_syscalls_with_totals() {
        let cat = Catalog::new();
        let c = Counts::new(cat.len());
        c.publish_names(&cat);
        let read = cat.slot_of_name("read").unwrap();
        let close = cat.slot_of_name("close").unwrap();
        c.record(read, 10, 100, false);
        c.record(read, 0, 50, true);
        c.record(close, 0, 7, false);
        assert_eq!(c.total_hits(), 3);
        let rows = c.snapshot();
        assert_eq!(
            rows,
            vec![
                Row { name: "read".into(), io: true, hits: 2, bytes: 10, ns: 150, errors: 1 },
                Row { name: "close".into(), io: false, hits: 1, bytes: 0, ns: 7, errors: 0 },
            ]
        );
    }

    #[test]
    fn calls_beyond_capacity_are_counted_as_lost() {
        let c = Counts::new(0);
        c.record((EXTRA_SLOTS + 5) as Slot, 1, 1, true);
        c.record(crate::syscall::LOST, 1, 1, false);
        assert!(c.snapshot().is_empty());
        assert_eq!(c.lost(), Lost { threads: 0, calls: 2 });
    }

    #[test]
    fn each_bound_reached_is_said_once_naming_it() {
        let bpf = Bounds { bpf: true, threads: 3, numbers: 256 };
        let none = Lost::default();
        assert_eq!(loss_notices(none, none, bpf), Vec::<String>::new());
        assert_eq!(
            loss_notices(none, Lost { threads: 2, calls: 0 }, bpf),
            ["eBPF thread map full (--max-threads 3): further threads are not counted (strace_lost_threads_total)"]
        );
        assert_eq!(
            loss_notices(Lost { threads: 2, calls: 0 }, Lost { threads: 5, calls: 0 }, bpf),
            Vec::<String>::new()
        );
        assert_eq!(
            loss_notices(none, Lost { threads: 0, calls: 1 }, Bounds::ptrace()),
            ["1024 syscall numbers outside the tables counted, calls of further ones are not (strace_lost_calls_total)"]
        );
    }
}
