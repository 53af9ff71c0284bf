//! See `pulse::fuzzing::promtool_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse::fuzzing::promtool_file(data));
