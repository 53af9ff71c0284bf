//! See `pulse::fuzzing::request_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse::fuzzing::request_batch(data));
