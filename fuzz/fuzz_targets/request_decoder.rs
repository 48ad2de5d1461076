//! Any bytes after the 4-byte size prefix must parse or fail, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strata_broker::api::parse_request(bytes::Bytes::copy_from_slice(data));
});
