//! The node's metric store and its Prometheus exposition; no sockets, no threads.
//!
//! [`Store`] owns every series the node has seen. Collectors are tracked by
//! [`protocol::Identity`]: for each one the store remembers how much of every
//! counter it already counted, which is what makes a collector's `Resync`
//! after a reconnection idempotent. Gauges are kept per collector and summed,
//! so a collector's contribution leaves with it.
//!
//! [`render`] turns a store into Prometheus text format 0.0.4 or OpenMetrics
//! 1.0, with families and series in a deterministic (sorted) order.
//!
//! Every refusal is a typed error whose `Display` is the message a peer or
//! a log line shows: [`Refusal`] (in an [`IngestError`]) for what a
//! collector asks, [`NameError`] for names, [`SnapshotError`] for state
//! files, [`Violation`] for a peer that breaks the protocol.
#![forbid(unsafe_code)]

mod expose;
pub mod fuzzing;
mod job_record;
#[cfg(test)]
mod job_tests;
mod journal;
mod profile;
mod refusal;
mod session;
mod snapshot;
mod store;
mod validate;

pub use expose::{render, render_scrape, Format, Scrape};
pub use job_record::{CollectorRecord, JobRecord, SeriesValue};
pub use journal::{segment_header, Replayed, SegmentError, SEGMENT_HEADER};
pub use profile::{
    profile_file_name, Command, Entry, Family, Listed, Measure, Profile, ProfileError, RankTime, MAX_COMMANDS,
    MAX_FUNCTIONS, MAX_RANKS, MAX_SYSCALLS, PROFILE_KIND, PROFILE_SCHEMA,
};
pub use refusal::{IngestError, Refusal, RefusalKind};
pub use session::{Session, SessionEnd, Tally, Violation, DEFAULT_MAX_FRAME, DEFAULT_MAX_REPLY_QUEUE};
pub use snapshot::{Skipped, Snapshot, SnapshotError, SnapshotSource};
pub use store::query::UnknownSeries;
pub use store::{
    job_family_name, CollectorSlot, Limits, ProcessRef, SeriesId, Store, JOB_LABEL, JOB_PREFIX, RECOVERING,
    RECOVERY_MAX, RECOVERY_MIN, RESERVED_PREFIX,
};
pub use validate::{labels_of_key, series_key, validate_desc, NameError};
