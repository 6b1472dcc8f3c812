#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| suitcase_fuzz::boot_state::run(data));
