#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| descent_fuzz::npz(data));
