//! One series and one family as the store keeps them: values, no
//! bookkeeping of who fed them. A series' key lives in `keys`, once.

use protocol::{Kind, Scale, ValueInfo};

/// Index of a series in the store.
pub type SeriesId = u32;

#[derive(Debug)]
pub(crate) struct Series {
    /// Index of the family in the store's families.
    pub(super) family: u32,
    pub(crate) kind: Kind,
    pub(super) scale: Scale,
    /// Sum of integer counter deltas, in units of `scale`.
    pub(super) int: u64,
    /// Sum of float counter deltas; for a gauge, the sum of its values.
    pub(super) float: f64,
    /// Gauge value of each contributing collector, by collector index;
    /// boxed so that a counter pays one pointer for it.
    gauges: Option<Box<Gauges>>,
    pub(super) ts: f64,
    /// The last generation in which the value changed (0: never).
    pub(super) changed: u64,
    /// Retired (a job's series after its retention): in no family, no
    /// query, no scrape; its id waits to be reused.
    pub(super) retired: bool,
}

/// The gauge values of a series, by collector index.
#[derive(Debug, Default)]
struct Gauges(Vec<(u32, f64)>);

/// A series' value as a scrape prints it, copied out of the store.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val {
    /// An exact integer, printed without a fraction.
    Int(u64),
    Float(f64),
}

impl Series {
    pub(super) fn new(family: u32, kind: Kind, scale: Scale) -> Series {
        Series { family, kind, scale, int: 0, float: 0.0, gauges: None, ts: 0.0, changed: 0, retired: false }
    }

    /// Whether the value is an exact integer, printed without a fraction.
    fn is_integral(&self) -> bool {
        self.kind == Kind::Counter && self.scale == Scale::One && self.float == 0.0
    }

    pub(crate) fn int(&self) -> u64 {
        self.int
    }

    /// Index of its family in the store's families.
    pub(crate) fn family_index(&self) -> u32 {
        self.family
    }

    pub(crate) fn scale(&self) -> Scale {
        self.scale
    }

    pub(crate) fn float(&self) -> f64 {
        self.float
    }

    pub(crate) fn ts(&self) -> f64 {
        self.ts
    }

    pub(crate) fn value(&self) -> f64 {
        match (self.kind, self.scale) {
            (Kind::Gauge, _) => self.float,
            (Kind::Counter, Scale::One) => self.int as f64 + self.float,
            // Dividing an exact integer by 1e9 rounds once, where summing
            // many scaled deltas would round at each step.
            (Kind::Counter, Scale::Nano) => self.int as f64 / 1e9 + self.float,
        }
    }

    pub(crate) fn val(&self) -> Val {
        if self.is_integral() {
            Val::Int(self.int)
        } else {
            Val::Float(self.value())
        }
    }

    /// Adds an integer delta. Beyond `u64`, a shared counter (every user
    /// adds to it) carries on in floating point, so no user can stop it
    /// for the others; any other is refused (false), as is a sum that
    /// would no longer be finite.
    pub(super) fn add_int(&mut self, d: u64, shared: bool) -> bool {
        if let Some(sum) = self.int.checked_add(d) {
            self.int = sum;
            return true;
        }
        if !shared {
            return false;
        }
        let carried = match self.scale {
            Scale::One => self.int as f64,
            Scale::Nano => self.int as f64 / 1e9,
        };
        if !(self.float + carried).is_finite() {
            return false;
        }
        self.float += carried;
        self.int = d;
        true
    }

    pub(super) fn value_info(&self, key: &str) -> ValueInfo {
        ValueInfo { name: key.to_owned(), ts: self.ts, value: self.value() }
    }

    /// Whether the gauge has a value from some collector (or the daemon).
    pub(super) fn has_gauges(&self) -> bool {
        self.gauges.as_ref().is_some_and(|g| !g.0.is_empty())
    }

    pub(super) fn set_gauge(&mut self, collector: u32, v: f64) {
        let gauges = &mut self.gauges.get_or_insert_with(Default::default).0;
        match gauges.iter_mut().find(|(c, _)| *c == collector) {
            Some((_, old)) => *old = v,
            None => gauges.push((collector, v)),
        }
        self.float = gauges.iter().map(|(_, v)| v).sum();
    }

    /// The gauge value `collector` gave, if any.
    pub(super) fn gauge_of(&self, collector: u32) -> Option<f64> {
        self.gauges.as_ref()?.0.iter().find(|(c, _)| *c == collector).map(|(_, v)| *v)
    }

    /// The value of `int` and `float` counted in this series' unit, in
    /// exposition units (what [`Series::value`] does for the totals).
    pub(super) fn exposed(&self, int: u64, float: f64) -> f64 {
        match self.scale {
            Scale::One => int as f64 + float,
            Scale::Nano => int as f64 / 1e9 + float,
        }
    }

    pub(super) fn drop_gauge(&mut self, collector: u32) -> bool {
        let Some(gauges) = self.gauges.as_mut().map(|g| &mut g.0) else { return false };
        let before = gauges.len();
        gauges.retain(|(c, _)| *c != collector);
        if gauges.len() == before {
            return false;
        }
        self.float = gauges.iter().map(|(_, v)| v).sum();
        if gauges.is_empty() {
            self.gauges = None;
        }
        true
    }
}

/// Who may register series in a family (see SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The daemon's own metrics: no peer may register in it.
    Daemon,
    /// Declared by the daemon for its collectors (MPI, syscalls, runs):
    /// every user adds to it, with the declared type and scale.
    Shared,
    /// The user who registered it first.
    Uid(u32),
    /// Registered by a peer of unknown user (a state file of an older
    /// version, an in-memory session): the next known user claims it.
    Unclaimed,
}

#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) name: String,
    pub(crate) help: String,
    pub(crate) kind: Kind,
    pub(crate) owner: Owner,
    /// The scale every series of a declared family must have.
    pub(crate) scale: Option<Scale>,
    /// Series of the family, in key order once the render order is built.
    pub(crate) series: Vec<SeriesId>,
    /// The family of this one's per-job twins (`tau_job_...`), for a
    /// shared family.
    pub(crate) twin: Option<u32>,
}

/// The family name OpenMetrics uses: counters without their `_total`.
pub(crate) fn om_family_name(name: &str, kind: Kind) -> &str {
    match kind {
        Kind::Counter => name.strip_suffix("_total").unwrap_or(name),
        Kind::Gauge => name,
    }
}
