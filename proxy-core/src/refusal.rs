//! Why the store refused a collector's request, as values: the connection
//! carries on, the peer is told the [`Refusal`]'s text, and the store counts
//! refusals by [`RefusalKind`].

use std::fmt;

use protocol::Kind;

use crate::validate::NameError;

/// One refused registration or sample. The `Display` text is what the
/// peer is told in its `Error` reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The same collector connected again; this connection is stale.
    Superseded,
    /// A series id at or beyond [`crate::Limits::max_series_per_collector`].
    IdBeyondLimit { id: u32, limit: usize },
    /// A series id too far past the ids registered so far.
    SparseId { id: u32, max_gap: usize },
    /// The collector already registered as many series as it may.
    CollectorLimit { limit: usize },
    /// The node already holds [`crate::Limits::max_series`] series.
    NodeLimit { limit: usize },
    /// The description breaks the Prometheus naming rules.
    InvalidName(NameError),
    /// The name is already a family of the other type.
    TypeConflict { name: String, was: Kind, now: Kind },
    /// The series exists with another [`protocol::Scale`].
    UnitConflict { key: String },
    /// Another family would render under the same OpenMetrics name.
    NameConflict { name: String, family: String },
    /// A sample for an id the collector did not register.
    Unregistered,
    /// A counter delta (or total) that is negative, infinite or NaN.
    BadValue { key: String, value: f64, total: bool },
    /// A counter delta (or total) that would take the counter, or what was
    /// counted of the collector, beyond `u64` or to an infinite float.
    Overflow { key: String, value: String, total: bool },
    /// More labels than [`crate::Limits::max_labels`].
    TooManyLabels { name: String, limit: usize },
    /// A label value longer than [`crate::Limits::max_label_value_length`].
    LabelValueTooLong { name: String, label: String, limit: usize },
    /// The family belongs to another user of a shared daemon.
    Foreign { name: String },
    /// A name reserved for the daemon's own metrics.
    Reserved { name: String },
    /// A new collector while [`crate::Limits::max_remembered`] collectors
    /// whose processes still run are disconnected: none of them may be
    /// forgotten (it would be counted twice when it comes back).
    RememberedLimit { limit: usize },
    /// A UNIX connection beyond the daemon's `--max-connections`: closed
    /// as soon as it is accepted.
    ConnectionLimit { limit: usize },
    /// A frame longer than the connection's read buffer may hold
    /// (`--max-frame`): the connection is closed.
    FrameLimit { len: usize, limit: usize },
    /// A reply to a collector that already leaves this many bytes of
    /// replies unread (`--max-reply-queue`): the reply is dropped.
    ReplyQueueLimit { limit: usize },
}

/// The variant of a [`Refusal`], without its details: what the store
/// counts refusals by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    Superseded,
    IdBeyondLimit,
    SparseId,
    CollectorLimit,
    NodeLimit,
    InvalidName,
    TypeConflict,
    UnitConflict,
    NameConflict,
    Unregistered,
    BadValue,
    Overflow,
    TooManyLabels,
    LabelValueTooLong,
    Foreign,
    Reserved,
    RememberedLimit,
    ConnectionLimit,
    FrameLimit,
    ReplyQueueLimit,
}

impl RefusalKind {
    /// Every kind, in declaration order.
    pub const ALL: [RefusalKind; 20] = [
        RefusalKind::Superseded,
        RefusalKind::IdBeyondLimit,
        RefusalKind::SparseId,
        RefusalKind::CollectorLimit,
        RefusalKind::NodeLimit,
        RefusalKind::InvalidName,
        RefusalKind::TypeConflict,
        RefusalKind::UnitConflict,
        RefusalKind::NameConflict,
        RefusalKind::Unregistered,
        RefusalKind::BadValue,
        RefusalKind::Overflow,
        RefusalKind::TooManyLabels,
        RefusalKind::LabelValueTooLong,
        RefusalKind::Foreign,
        RefusalKind::Reserved,
        RefusalKind::RememberedLimit,
        RefusalKind::ConnectionLimit,
        RefusalKind::FrameLimit,
        RefusalKind::ReplyQueueLimit,
    ];

    /// The `reason` label of `tau_metric_proxy_refusals_total`.
    pub fn name(self) -> &'static str {
        match self {
            RefusalKind::Superseded => "superseded",
            RefusalKind::IdBeyondLimit => "id_beyond_limit",
            RefusalKind::SparseId => "sparse_id",
            RefusalKind::CollectorLimit => "collector_limit",
            RefusalKind::NodeLimit => "node_limit",
            RefusalKind::InvalidName => "invalid_name",
            RefusalKind::TypeConflict => "type_conflict",
            RefusalKind::UnitConflict => "unit_conflict",
            RefusalKind::NameConflict => "name_conflict",
            RefusalKind::Unregistered => "unregistered",
            RefusalKind::BadValue => "bad_value",
            RefusalKind::Overflow => "overflow",
            RefusalKind::TooManyLabels => "too_many_labels",
            RefusalKind::LabelValueTooLong => "label_value_too_long",
            RefusalKind::Foreign => "foreign_family",
            RefusalKind::Reserved => "reserved_name",
            RefusalKind::RememberedLimit => "remembered_limit",
            RefusalKind::ConnectionLimit => "connection_limit",
            RefusalKind::FrameLimit => "frame_limit",
            RefusalKind::ReplyQueueLimit => "reply_queue_limit",
        }
    }

    /// Whether the refusal is a series limit of the node or of the
    /// collector (its series count, its largest id, the gap between ids).
    pub fn is_series_limit(self) -> bool {
        matches!(
            self,
            RefusalKind::IdBeyondLimit | RefusalKind::SparseId | RefusalKind::CollectorLimit | RefusalKind::NodeLimit
        )
    }
}

impl Refusal {
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::Superseded => RefusalKind::Superseded,
            Refusal::IdBeyondLimit { .. } => RefusalKind::IdBeyondLimit,
            Refusal::SparseId { .. } => RefusalKind::SparseId,
            Refusal::CollectorLimit { .. } => RefusalKind::CollectorLimit,
            Refusal::NodeLimit { .. } => RefusalKind::NodeLimit,
            Refusal::InvalidName(_) => RefusalKind::InvalidName,
            Refusal::TypeConflict { .. } => RefusalKind::TypeConflict,
            Refusal::UnitConflict { .. } => RefusalKind::UnitConflict,
            Refusal::NameConflict { .. } => RefusalKind::NameConflict,
            Refusal::Unregistered => RefusalKind::Unregistered,
            Refusal::BadValue { .. } => RefusalKind::BadValue,
            Refusal::Overflow { .. } => RefusalKind::Overflow,
            Refusal::TooManyLabels { .. } => RefusalKind::TooManyLabels,
            Refusal::LabelValueTooLong { .. } => RefusalKind::LabelValueTooLong,
            Refusal::Foreign { .. } => RefusalKind::Foreign,
            Refusal::Reserved { .. } => RefusalKind::Reserved,
            Refusal::RememberedLimit { .. } => RefusalKind::RememberedLimit,
            Refusal::ConnectionLimit { .. } => RefusalKind::ConnectionLimit,
            Refusal::FrameLimit { .. } => RefusalKind::FrameLimit,
            Refusal::ReplyQueueLimit { .. } => RefusalKind::ReplyQueueLimit,
        }
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Superseded => f.write_str("this connection was superseded by a newer one of the same collector"),
            Refusal::IdBeyondLimit { id, limit } => {
                write!(f, "series id {id} is beyond the per-collector limit of {limit} series")
            }
            Refusal::SparseId { id, max_gap } => {
                write!(f, "series ids must be dense: id {id} is more than {max_gap} past the ids registered so far")
            }
            Refusal::CollectorLimit { limit } => write!(f, "per-collector limit of {limit} series reached"),
            Refusal::NodeLimit { limit } => write!(f, "node limit of {limit} series reached"),
            Refusal::InvalidName(e) => e.fmt(f),
            Refusal::TypeConflict { name, was, now } => {
                write!(f, "type conflict: {name} is a {}, not a {}", kind_name(*was), kind_name(*now))
            }
            Refusal::UnitConflict { key } => write!(f, "unit conflict: {key} was registered with another scale"),
            Refusal::NameConflict { name, family } => {
                write!(f, "name conflict: {name:?} would share the OpenMetrics family {family:?} with another metric")
            }
            Refusal::Unregistered => f.write_str("update for a series id that was not registered"),
            Refusal::BadValue { key, value, total } => {
                write!(f, "counter {key} cannot {} by {value}", if *total { "total" } else { "increase" })
            }
            Refusal::Overflow { key, value, total } => write!(
                f,
                "counter {key} cannot {} by {value}: it would overflow",
                if *total { "total" } else { "increase" }
            ),
            Refusal::TooManyLabels { name, limit } => write!(f, "{name:?} has more than {limit} labels"),
            Refusal::LabelValueTooLong { name, label, limit } => {
                write!(f, "value of label {label:?} in {name:?} is longer than {limit} bytes")
            }
            Refusal::Foreign { name } => {
                write!(f, "{name} belongs to another user of this proxy: choose another metric name")
            }
            Refusal::Reserved { name } => write!(f, "{name} is reserved for the proxy's own metrics"),
            Refusal::RememberedLimit { limit } => write!(
                f,
                "{limit} disconnected collectors whose processes still run are remembered: no new collector \
                 until some come back or end (see --max-remembered)"
            ),
            Refusal::ConnectionLimit { limit } => {
                write!(f, "{limit} connections are open: no more until some close (see --max-connections)")
            }
            Refusal::FrameLimit { len, limit } => {
                write!(f, "frame of {len} bytes exceeds this proxy's limit of {limit} bytes (see --max-frame)")
            }
            Refusal::ReplyQueueLimit { limit } => {
                write!(f, "{limit} bytes of replies are unread: further replies are dropped (see --max-reply-queue)")
            }
        }
    }
}

impl std::error::Error for Refusal {}

impl From<NameError> for Refusal {
    fn from(e: NameError) -> Refusal {
        Refusal::InvalidName(e)
    }
}

/// A request that could not be applied, with the collector's series id it
/// concerns. The connection may carry on.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestError {
    /// The collector's series id concerned, if any.
    pub id: Option<u32>,
    pub refusal: Refusal,
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "series id {id}: {}", self.refusal),
            None => self.refusal.fmt(f),
        }
    }
}

impl std::error::Error for IngestError {}

/// How many refusals of each kind a store made.
#[derive(Debug, Clone, Default)]
pub(crate) struct RefusalCounts([u64; RefusalKind::ALL.len()]);

impl RefusalCounts {
    pub(crate) fn add(&mut self, kind: RefusalKind) {
        self.add_many(kind, 1);
    }

    pub(crate) fn add_many(&mut self, kind: RefusalKind, n: u64) {
        self.0[kind as usize] += n;
    }

    pub(crate) fn get(&self, kind: RefusalKind) -> u64 {
        self.0[kind as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One refusal of `kind` and the text it must show.
    fn example(kind: RefusalKind) -> (Refusal, &'static str) {
        let s = |v: &str| v.to_owned();
        match kind {
            RefusalKind::Superseded => {
                (Refusal::Superseded, "this connection was superseded by a newer one of the same collector")
            }
            RefusalKind::IdBeyondLimit => (
                Refusal::IdBeyondLimit { id: 2, limit: 2 },
                "series id 2 is beyond the per-collector limit of 2 series",
            ),
            RefusalKind::SparseId => (
                Refusal::SparseId { id: 5000, max_gap: 1024 },
                "series ids must be dense: id 5000 is more than 1024 past the ids registered so far",
            ),
            RefusalKind::CollectorLimit => {
                (Refusal::CollectorLimit { limit: 7 }, "per-collector limit of 7 series reached")
            }
            RefusalKind::NodeLimit => (Refusal::NodeLimit { limit: 3 }, "node limit of 3 series reached"),
            RefusalKind::InvalidName => (
                Refusal::InvalidName(NameError::GaugeWithTotal { name: s("x_total") }),
                "gauge name \"x_total\" must not end in \"_total\"",
            ),
            RefusalKind::TypeConflict => (
                Refusal::TypeConflict { name: s("x_total"), was: Kind::Counter, now: Kind::Gauge },
                "type conflict: x_total is a counter, not a gauge",
            ),
            RefusalKind::UnitConflict => (
                Refusal::UnitConflict { key: s("y_total") },
                "unit conflict: y_total was registered with another scale",
            ),
            RefusalKind::NameConflict => (
                Refusal::NameConflict { name: s("x"), family: s("x") },
                "name conflict: \"x\" would share the OpenMetrics family \"x\" with another metric",
            ),
            RefusalKind::Unregistered => (Refusal::Unregistered, "update for a series id that was not registered"),
            RefusalKind::BadValue => (
                Refusal::BadValue { key: s("x_total"), value: -1.0, total: false },
                "counter x_total cannot increase by -1",
            ),
            RefusalKind::Overflow => (
                Refusal::Overflow { key: s("x_total"), value: s("1.7e308"), total: false },
                "counter x_total cannot increase by 1.7e308: it would overflow",
            ),
            RefusalKind::TooManyLabels => {
                (Refusal::TooManyLabels { name: s("g"), limit: 16 }, "\"g\" has more than 16 labels")
            }
            RefusalKind::LabelValueTooLong => (
                Refusal::LabelValueTooLong { name: s("g"), label: s("a"), limit: 1024 },
                "value of label \"a\" in \"g\" is longer than 1024 bytes",
            ),
            RefusalKind::Foreign => (
                Refusal::Foreign { name: s("app_total") },
                "app_total belongs to another user of this proxy: choose another metric name",
            ),
            RefusalKind::Reserved => (
                Refusal::Reserved { name: s("tau_metric_proxy_frames_total") },
                "tau_metric_proxy_frames_total is reserved for the proxy's own metrics",
            ),
            RefusalKind::RememberedLimit => (
                Refusal::RememberedLimit { limit: 3 },
                "3 disconnected collectors whose processes still run are remembered: no new collector until some \
                 come back or end (see --max-remembered)",
            ),
            RefusalKind::ConnectionLimit => (
                Refusal::ConnectionLimit { limit: 4 },
                "4 connections are open: no more until some close (see --max-connections)",
            ),
            RefusalKind::FrameLimit => (
                Refusal::FrameLimit { len: 300, limit: 256 },
                "frame of 300 bytes exceeds this proxy's limit of 256 bytes (see --max-frame)",
            ),
            RefusalKind::ReplyQueueLimit => (
                Refusal::ReplyQueueLimit { limit: 64 },
                "64 bytes of replies are unread: further replies are dropped (see --max-reply-queue)",
            ),
        }
    }

    #[test]
    fn every_refusal_keeps_its_message() {
        for kind in RefusalKind::ALL {
            let (refusal, text) = example(kind);
            assert_eq!(refusal.kind(), kind);
            assert_eq!(refusal.to_string(), text, "{kind:?}");
        }
        let total = Refusal::BadValue { key: "t_total".into(), value: f64::NAN, total: true };
        assert_eq!(total.to_string(), "counter t_total cannot total by NaN");
        let reversed = Refusal::TypeConflict { name: "g".into(), was: Kind::Gauge, now: Kind::Counter };
        assert_eq!(reversed.to_string(), "type conflict: g is a gauge, not a counter");
    }

    #[test]
    fn an_ingest_error_names_its_series_id() {
        let e = IngestError { id: Some(5), refusal: Refusal::Unregistered };
        assert_eq!(e.to_string(), "series id 5: update for a series id that was not registered");
        let e = IngestError { id: None, refusal: Refusal::Superseded };
        assert_eq!(e.to_string(), "this connection was superseded by a newer one of the same collector");
    }

    #[test]
    fn kinds_index_their_counts() {
        let mut counts = RefusalCounts::default();
        for (i, kind) in RefusalKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i);
            for _ in 0..=i {
                counts.add(kind);
            }
        }
        for (i, kind) in RefusalKind::ALL.into_iter().enumerate() {
            assert_eq!(counts.get(kind), i as u64 + 1);
        }
        let limits: Vec<RefusalKind> = RefusalKind::ALL.into_iter().filter(|k| k.is_series_limit()).collect();
        assert_eq!(
            limits,
            [RefusalKind::IdBeyondLimit, RefusalKind::SparseId, RefusalKind::CollectorLimit, RefusalKind::NodeLimit]
        );
    }
}
