//! QFPay's answers: any body is parsed or refused, never a panic; a lookup on any parsed enquiry
//! answers; a code is only ever success when it is 0000.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qfpay::{EnquiryResponse, RefundLookup, RefundResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = RefundResponse::parse(data) {
        let class = qfpay::classify(r.respcd(), None);
        assert!(class != qfpay::Class::Success || r.respcd() == "0000");
    }
    if let Ok(e) = EnquiryResponse::parse(data) {
        if let RefundLookup::Succeeded(rec) = e.refund("RF1", "1", 100) {
            assert_eq!(rec.respcd(), "0000");
        }
    }
});
