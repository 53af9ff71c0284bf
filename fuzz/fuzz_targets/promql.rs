//! See `pulse::fuzzing::promql`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse::fuzzing::promql(data));
