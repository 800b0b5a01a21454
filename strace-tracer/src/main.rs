//! tau_strace (being written).
fn main() {}
