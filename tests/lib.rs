//! Integration tests of tau_metric_proxy live in `tests/it/`; this library is empty.
#![forbid(unsafe_code)]
