//! Fuzz target: the protocol's frame decoder on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| proxy_core::fuzzing::frames(data));
