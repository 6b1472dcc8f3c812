#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    suitcase_manifest::__fuzz::decode_manifest(data);
});
