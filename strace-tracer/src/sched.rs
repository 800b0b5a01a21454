//! Keeping the tracer on its tracee's CPU without pinning anyone.
//!
//! Every stop hands the CPU from tracee to tracer and back. When the two
//! sit on different CPUs each hand-over wakes an idle CPU, which costs far
//! more than the stop itself. A `SCHED_IDLE` tracer makes the scheduler
//! treat its CPU as free: the resumed tracee is queued right there and
//! preempts it, and the stopping tracee wakes the tracer on its own CPU, so
//! the pair shares one CPU whatever their affinity. The risk is starvation
//! when normal tasks (other threads of the tracee included) keep the
//! allowed CPUs busy.
//!
//! So the governor measures instead of guessing: it runs the tracer a
//! short while under each policy, keeps the one under which the tracee
//! completed more syscalls per second, holds it for a while (longer each
//! time the same policy wins again) and measures again. Independently, a
//! tracer starved under `SCHED_IDLE` (long run-queue waits) is switched
//! back at once. All this only where going back to `SCHED_OTHER` is
//! permitted (`CAP_SYS_NICE` or a high enough `RLIMIT_NICE`, probed on a
//! throw-away thread) and where the tracer may use more than one CPU.

use std::time::{Duration, Instant};

use crate::sys::{self, Pid};

/// Mean run-queue wait per scheduling of the tracer above which it is
/// considered starved (a healthy hand-over waits about a microsecond).
const STARVED_NS: u64 = 50_000;
/// Length of each measuring window.
const SAMPLE: Duration = Duration::from_millis(100);
const FIRST_HOLD: Duration = Duration::from_secs(1);
const MAX_HOLD: Duration = Duration::from_secs(16);

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
fn idle_is_reversible() -> bool {
    std::thread::spawn(|| sys::set_idle_policy(0, true).is_ok() && sys::set_idle_policy(0, false).is_ok())
        .join()
        .unwrap_or(false)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    Idle,
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Measuring `policy` since `since`, starting at `hits` syscalls;
    /// `idle_rate` is the result of the idle window once measured.
    Sample { policy: Policy, since: Instant, hits: u64, idle_rate: Option<f64> },
    /// Keeping `policy` until `until`.
    Hold { policy: Policy, until: Instant },
}

/// Chooses the tracer's policy from what it observes; pure logic.
#[derive(Debug)]
pub(crate) struct Governor {
    phase: Phase,
    last_stat: Option<(u64, u64)>,
    last_winner: Option<Policy>,
    hold: Duration,
}

impl Governor {
    /// Starts by measuring the idle policy.
    pub(crate) fn new(now: Instant, hits: u64) -> Governor {
        Governor {
            phase: Phase::Sample { policy: Policy::Idle, since: now, hits, idle_rate: None },
            last_stat: None,
            last_winner: None,
            hold: FIRST_HOLD,
        }
    }

    pub(crate) fn policy(&self) -> Policy {
        match self.phase {
            Phase::Sample { policy, .. } | Phase::Hold { policy, .. } => policy,
        }
    }

    /// One observation: total syscalls completed so far and the tracer's
    /// scheduling statistics. Returns the policy to switch to, if any.
    pub(crate) fn observe(&mut self, now: Instant, hits: u64, stat: Option<(u64, u64)>) -> Option<Policy> {
        let before = self.policy();
        let prev_stat = std::mem::replace(&mut self.last_stat, stat);
        if before == Policy::Idle && starved(prev_stat, stat) {
            self.settle(Policy::Normal, now);
            return Some(Policy::Normal);
        }
        match self.phase {
            Phase::Sample { policy, since, hits: h0, idle_rate } => {
                let elapsed = now.saturating_duration_since(since);
                if elapsed >= SAMPLE {
                    let rate = hits.saturating_sub(h0) as f64 / elapsed.as_secs_f64();
                    match (policy, idle_rate) {
                        (Policy::Idle, _) => {
                            self.phase =
                                Phase::Sample { policy: Policy::Normal, since: now, hits, idle_rate: Some(rate) };
                        }
                        (Policy::Normal, Some(idle)) => {
                            // The idle policy must clearly win: normal is
                            // the safe choice.
                            let winner = if idle > rate * 1.1 { Policy::Idle } else { Policy::Normal };
                            self.settle(winner, now);
                        }
                        (Policy::Normal, None) => self.settle(Policy::Normal, now),
                    }
                }
            }
            Phase::Hold { until, .. } => {
                if now >= until {
                    self.phase = Phase::Sample { policy: Policy::Idle, since: now, hits, idle_rate: None };
                }
            }
        }
        let after = self.policy();
        (after != before).then_some(after)
    }

    fn settle(&mut self, winner: Policy, now: Instant) {
        if self.last_winner == Some(winner) {
            self.hold = (self.hold * 2).min(MAX_HOLD);
        } else {
            self.hold = FIRST_HOLD;
        }
        self.last_winner = Some(winner);
        self.phase = Phase::Hold { policy: winner, until: now + self.hold };
    }
}

/// Whether the run-queue wait per scheduling between two observations
/// shows a starved tracer.
fn starved(prev: Option<(u64, u64)>, now: Option<(u64, u64)>) -> bool {
    let (Some((w0, n0)), Some((w1, n1))) = (prev, now) else { return false };
    let runs = n1.saturating_sub(n0);
    let wait = w1.saturating_sub(w0);
    // No run at all while waiting long also means starved.
    (runs == 0 && wait > STARVED_NS) || (runs > 0 && wait / runs > STARVED_NS)
}

/// Starts the governor for tracing thread `tid` when the idle policy can
/// help and can be undone. On a single allowed CPU (`taskset`, an MPI rank
/// bound to a core) tracer and tracee share it anyway: the idle policy
/// could only starve the tracer.
pub(crate) fn start(tid: Pid, hits: u64) -> Option<Governor> {
    let cpus = sys::get_affinity(tid).map(|c| c.len()).unwrap_or(0);
    if cpus < 2 || !idle_is_reversible() || sys::set_idle_policy(tid, true).is_err() {
        return None;
    }
    Some(Governor::new(Instant::now(), hits))
}

/// One periodic check (called by the push thread).
pub(crate) fn tick(gov: &mut Governor, tid: Pid, hits: u64) {
    if let Some(policy) = gov.observe(Instant::now(), hits, schedstat(tid)) {
        log::debug!("tracer scheduling policy: {policy:?}");
        let _ = sys::set_idle_policy(tid, policy == Policy::Idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn parses_schedstat() {
        assert_eq!(parse_schedstat("135270 182764 3\n"), Some((182764, 3)));
        assert_eq!(parse_schedstat("1 2"), None);
    }

    #[test]
    fn keeps_the_idle_policy_when_it_is_faster() {
        let t0 = Instant::now();
        let mut g = Governor::new(t0, 0);
        assert_eq!(g.policy(), Policy::Idle);
        assert_eq!(g.observe(t0 + 50 * MS, 5_000, None), None);
        // 10 000 calls in the idle window, then 2 000 in the normal one.
        assert_eq!(g.observe(t0 + 100 * MS, 10_000, None), Some(Policy::Normal));
        assert_eq!(g.observe(t0 + 200 * MS, 12_000, None), Some(Policy::Idle));
        // Held for a second, then measured again.
        assert_eq!(g.observe(t0 + 1100 * MS, 100_000, None), None);
        assert_eq!(g.observe(t0 + 1200 * MS, 110_000, None), None);
        assert_eq!(g.observe(t0 + 1300 * MS, 120_000, None), Some(Policy::Normal));
        assert_eq!(g.observe(t0 + 1400 * MS, 122_000, None), Some(Policy::Idle));
        // Same winner again: held twice as long.
        assert_eq!(g.observe(t0 + 3300 * MS, 130_000, None), None);
        assert_eq!(g.observe(t0 + 3400 * MS, 130_000, None), None);
    }

    #[test]
    fn prefers_the_normal_policy_unless_idle_clearly_wins() {
        let t0 = Instant::now();
        let mut g = Governor::new(t0, 0);
        assert_eq!(g.observe(t0 + 100 * MS, 1_000, None), Some(Policy::Normal));
        // 1 000 vs 950: not a clear win.
        assert_eq!(g.observe(t0 + 200 * MS, 1_950, None), None);
        assert_eq!(g.policy(), Policy::Normal);
        assert_eq!(g.observe(t0 + 1199 * MS, 5_000, None), None);
        assert_eq!(g.observe(t0 + 1200 * MS, 5_000, None), Some(Policy::Idle));
    }

    #[test]
    fn a_starved_idle_tracer_goes_back_at_once() {
        let t0 = Instant::now();
        let mut g = Governor::new(t0, 0);
        assert_eq!(g.observe(t0 + 20 * MS, 100, Some((0, 0))), None);
        // 1000 runs waiting 2 µs each: healthy.
        assert_eq!(g.observe(t0 + 40 * MS, 200, Some((2_000_000, 1000))), None);
        // 10 runs waiting 1 ms each: starved.
        assert_eq!(g.observe(t0 + 60 * MS, 210, Some((12_000_000, 1010))), Some(Policy::Normal));
        assert_eq!(g.observe(t0 + 80 * MS, 300, Some((12_000_000, 1010))), None);
        assert_eq!(g.policy(), Policy::Normal);
        // Waiting without being run at all is starvation too.
        assert!(starved(Some((0, 5)), Some((20_000_000, 5))));
        assert!(!starved(Some((0, 5)), Some((0, 5))));
    }
}
