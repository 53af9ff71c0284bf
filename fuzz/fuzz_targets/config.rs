//! See `pulse::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse::fuzzing::config(data));
