//! Properties of the protocol code under arbitrary input: the signer, the classifier, the parsers.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use qfpay::sign::{EmptyValues, sign, signing_string_of};
use qfpay::{ClientKey, EnquiryResponse, Params, RefundResponse, SignAlg, classify};

/// Distinct names (a request never repeats one), values of any script.
fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map("[a-z_]{1,12}", "\\PC{0,20}", 0..12).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #[test]
    fn the_signature_does_not_depend_on_parameter_order(mut ps in pairs(), key in "[A-Z0-9]{1,32}") {
        let key = ClientKey::new(key);
        let a: Params = ps.iter().cloned().collect();
        ps.reverse();
        let b: Params = ps.iter().cloned().collect();
        prop_assert_eq!(sign(&a, &key, SignAlg::Md5), sign(&b, &key, SignAlg::Md5));
        prop_assert_eq!(sign(&a, &key, SignAlg::Sha256), sign(&b, &key, SignAlg::Sha256));
    }

    #[test]
    fn empty_values_are_neither_signed_nor_sent(ps in pairs(), empty_names in proptest::collection::vec("[a-z]{1,8}", 0..4)) {
        let key = ClientKey::new("K");
        let with_empties: Vec<(String, String)> =
            ps.iter().cloned().chain(empty_names.iter().map(|n| (format!("Z{n}"), String::new()))).collect();
        let params: Params = with_empties.iter().cloned().collect();
        let plain: Params = ps.iter().cloned().collect();
        prop_assert_eq!(sign(&params, &key, SignAlg::Md5), sign(&plain, &key, SignAlg::Md5));
        prop_assert!(params.iter().all(|(_, v)| !v.is_empty()), "nothing empty is kept, so nothing empty is sent");
        // …and the omit rule is exactly "drop empties before joining".
        let s = signing_string_of(with_empties.iter().map(|(k, v)| (k.as_str(), v.as_str())), EmptyValues::Omit);
        prop_assert_eq!(s, qfpay::sign::signing_string(&plain));
    }

    #[test]
    fn the_form_body_decodes_to_what_was_signed(ps in pairs()) {
        let params: Params = ps.into_iter().collect();
        prop_assert_eq!(Params::from_form_body(params.form_body().as_bytes()), params);
    }

    #[test]
    fn every_code_has_a_class_and_none_reads_as_success_but_0000(code in "\\PC{0,6}") {
        let class = classify(&code, None);
        prop_assert!(class != qfpay::Class::Success || code.trim() == "0000");
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = RefundResponse::parse(&body);
        let _ = EnquiryResponse::parse(&body);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_json(v in json_value()) {
        let body = serde_json::to_vec(&v).unwrap();
        let _ = RefundResponse::parse(&body);
        if let Ok(e) = EnquiryResponse::parse(&body) {
            let _ = e.refund("RF1", "1", 100);
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
        "\\PC{0,12}".prop_map(serde_json::Value::String),
        prop_oneof![Just("0000"), Just("1145"), Just("refund"), Just("RF1"), Just("1"), Just("100")]
            .prop_map(|s| serde_json::Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        let keys = prop_oneof![
            Just("respcd".to_owned()),
            Just("data".to_owned()),
            Just("out_trade_no".to_owned()),
            Just("order_type".to_owned()),
            Just("origssn".to_owned()),
            Just("txamt".to_owned()),
            Just("syssn".to_owned()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
