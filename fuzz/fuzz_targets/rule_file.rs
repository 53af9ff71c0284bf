//! See `pulse::fuzzing::rule_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse::fuzzing::rule_file(data));
