#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| suitcase_fuzz::trust::run(data));
