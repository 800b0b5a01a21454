//! Converts cycle-counter ticks to nanoseconds without ever sleeping.
//!
//! The counter and the monotonic clock are both read once when the first
//! MPI call is counted; at each push the ratio of the two elapsed spans
//! gives the tick rate, more precise the longer the program runs.

use std::sync::OnceLock;
use std::time::Instant;

use crate::cycles;

static START: OnceLock<(u64, Instant)> = OnceLock::new();

pub(crate) fn start() {
    START.get_or_init(|| (cycles::now(), Instant::now()));
}

/// Ticks per elapsed nanoseconds, as measured since [`start`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    ticks: u64,
    ns: u64,
}

pub(crate) fn rate() -> Rate {
    if cycles::TICKS_ARE_NS {
        return Rate { ticks: 1, ns: 1 };
    }
    match START.get() {
        Some((t0, i0)) => {
            let ns = i0.elapsed().as_nanos().min(u64::MAX as u128) as u64;
            Rate { ticks: cycles::now().wrapping_sub(*t0), ns }
        }
        None => Rate { ticks: 0, ns: 0 },
    }
}

impl Rate {
    pub(crate) fn to_ns(self, ticks: u64) -> u64 {
        if self.ticks == 0 {
            return 0;
        }
        (ticks as u128 * self.ns as u128 / self.ticks as u128).min(u64::MAX as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_is_proportional_and_safe() {
        let r = Rate { ticks: 3_000, ns: 1_000 };
        assert_eq!(r.to_ns(3_000_000), 1_000_000);
        assert_eq!(Rate { ticks: 0, ns: 5 }.to_ns(10), 0);
        assert_eq!(Rate { ticks: 1, ns: u64::MAX }.to_ns(u64::MAX), u64::MAX);
    }
}
