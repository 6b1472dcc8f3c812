#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = suitcase_manifest::__fuzz::decode_envelope(data);
});
