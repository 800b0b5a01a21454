//! Keeping the tracer on its tracee's CPU without pinning anyone.
//!
//! Every stop hands the CPU from tracee to tracer and back. When the two
//! sit on different CPUs each hand-over wakes an idle CPU, which costs far
//! more than the stop itself. A `SCHED_IDLE` tracer makes the scheduler
//! treat its CPU as free: the resumed tracee is queued right there and
//! preempts it, and the stopping tracee wakes the tracer on its own CPU, so
//! the pair shares one CPU whatever their affinity. The risk is starvation
//! when normal tasks keep every allowed CPU busy; the governor watches the
//! tracer's run-queue delay and falls back to `SCHED_OTHER` (retrying later
//! with a growing back-off). It is only used where returning to
//! `SCHED_OTHER` is permitted (`CAP_SYS_NICE` or a high enough
//! `RLIMIT_NICE`), which is probed on a throw-away thread.

use std::time::{Duration, Instant};

use crate::sys::{self, Pid};

/// Mean run-queue wait per scheduling of the tracer above which it is
/// considered starved (a healthy hand-over waits about a microsecond).
const STARVED_NS: u64 = 50_000;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(32);

/// `(run-queue wait in ns, times scheduled)` from `/proc/.../schedstat`.
pub(crate) fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut f = text.split_whitespace();
    let _on_cpu = f.next()?;
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

fn schedstat(tid: Pid) -> Option<(u64, u64)> {
    parse_schedstat(&std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?)
}

/// Whether this process may go `SCHED_IDLE` and come back.
pub(crate) fn idle_is_reversible() -> bool {
    std::thread::spawn(|| sys::set_idle_policy(0, true).is_ok() && sys::set_idle_policy(0, false).is_ok())
        .join()
        .unwrap_or(false)
}

/// What the governor should do after one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    /// Leave `SCHED_IDLE`: the tracer is starved.
    Normal,
    /// Try `SCHED_IDLE` again.
    Idle,
}

/// Decides the tracer's policy from its scheduling statistics.
#[derive(Debug)]
pub(crate) struct Governor {
    idle: bool,
    last: Option<(u64, u64)>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

impl Governor {
    /// A governor whose tracer is currently `SCHED_IDLE`.
    pub(crate) fn new() -> Governor {
        Governor { idle: true, last: None, backoff: FIRST_BACKOFF, retry_at: None }
    }

    pub(crate) fn observe(&mut self, stat: Option<(u64, u64)>, now: Instant) -> Verdict {
        let prev = std::mem::replace(&mut self.last, stat);
        if self.idle {
            let (Some((w0, n0)), Some((w1, n1))) = (prev, stat) else { return Verdict::Keep };
            let runs = n1.saturating_sub(n0);
            if runs > 0 && w1.saturating_sub(w0) / runs > STARVED_NS {
                self.idle = false;
                self.retry_at = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                return Verdict::Normal;
            }
            Verdict::Keep
        } else if self.retry_at.is_some_and(|t| now >= t) {
            self.idle = true;
            self.last = None;
            Verdict::Idle
        } else {
            Verdict::Keep
        }
    }
}

/// Puts the tracing thread `tid` under `SCHED_IDLE` when that can be
/// undone, and returns the governor that watches it.
pub(crate) fn start(tid: Pid) -> Option<Governor> {
    if !idle_is_reversible() || sys::set_idle_policy(tid, true).is_err() {
        return None;
    }
    Some(Governor::new())
}

/// One periodic check (called by the push thread).
pub(crate) fn tick(gov: &mut Governor, tid: Pid) {
    match gov.observe(schedstat(tid), Instant::now()) {
        Verdict::Keep => {}
        Verdict::Normal => {
            log::info!("tracer starved under SCHED_IDLE: back to SCHED_OTHER");
            let _ = sys::set_idle_policy(tid, false);
        }
        Verdict::Idle => {
            let _ = sys::set_idle_policy(tid, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schedstat() {
        assert_eq!(parse_schedstat("135270 182764 3\n"), Some((182764, 3)));
        assert_eq!(parse_schedstat("1 2"), None);
    }

    #[test]
    fn falls_back_when_starved_and_retries_with_growing_backoff() {
        let t0 = Instant::now();
        let mut g = Governor::new();
        assert_eq!(g.observe(Some((0, 0)), t0), Verdict::Keep);
        // 1000 runs waiting 2 µs each: healthy.
        assert_eq!(g.observe(Some((2_000_000, 1000)), t0), Verdict::Keep);
        // 10 runs waiting 1 ms each: starved.
        assert_eq!(g.observe(Some((12_000_000, 1010)), t0), Verdict::Normal);
        assert_eq!(g.observe(Some((12_000_000, 1010)), t0 + Duration::from_millis(500)), Verdict::Keep);
        assert_eq!(g.observe(Some((12_000_000, 1010)), t0 + Duration::from_secs(1)), Verdict::Idle);
        // The first observation after a retry only sets the baseline.
        assert_eq!(g.observe(Some((12_000_000, 1010)), t0 + Duration::from_secs(1)), Verdict::Keep);
        assert_eq!(g.observe(Some((52_000_000, 1020)), t0 + Duration::from_secs(1)), Verdict::Normal);
        // Second back-off is twice as long.
        assert_eq!(g.observe(None, t0 + Duration::from_secs(2)), Verdict::Keep);
        assert_eq!(g.observe(None, t0 + Duration::from_secs(3)), Verdict::Idle);
    }
}
