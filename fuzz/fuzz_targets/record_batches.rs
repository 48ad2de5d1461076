//! The produce hot path's batch validation and the full record decoder on
//! arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ranges) = strata_format::split_batches(data) {
        for r in ranges {
            let _ = strata_format::decode_batch(&data[r]);
        }
    }
    let _ = strata_format::decode_batch(data);
});
