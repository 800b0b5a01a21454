//! Fuzz target: the daemon's connection state machine on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| proxy_core::fuzzing::session(data));
