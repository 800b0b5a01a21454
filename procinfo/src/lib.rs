//! What the kernel says about a process, read from `/proc`.
//!
//! The daemon asks whether a collector's process is still the one that
//! connected; collectors tell their own start time in their identity. Both
//! read the same fields the same way, here, with no dependency beyond `std`,
//! so that a collector preloaded into someone else's program pulls in
//! nothing more for it.
#![forbid(unsafe_code)]

mod stat;

pub use stat::{comm, has_live_thread, stat, Stat};
