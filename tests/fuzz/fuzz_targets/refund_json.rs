//! A refund request as JSON (the producer API's body): decoding and validation never panic, and a
//! request that validates always hashes and describes itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ledger::NewRefund;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<NewRefund>(data) {
        let r = r.normalised();
        if r.validate().is_ok() {
            assert_eq!(r.payload_hash().len(), 64);
            assert!(r.txamt > 0);
        }
    }
});
