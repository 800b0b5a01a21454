//! `tau_metric_client`: query the proxy from the command line.
fn main() {}
