//! Every vector of `tests/data/sign_vectors.json` (QFPay's documented signing examples), reproduced.

#![allow(clippy::unwrap_used)]

use qfpay::sign::{EmptyValues, notification_signature, sign, sign_string, signing_string_of, verify_notification};
use qfpay::{ClientKey, Params, SignAlg};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sign_vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_request_vector_signs_as_documented() {
    let mut checked = 0;
    for v in vectors().iter().filter(|v| v["kind"] == "request") {
        let name = v["name"].as_str().unwrap();
        let key = ClientKey::new(v["key"].as_str().unwrap());
        let pairs: Vec<(&str, &str)> =
            v["params"].as_object().unwrap().iter().map(|(k, x)| (k.as_str(), x.as_str().unwrap())).collect();
        let rule = match v["empty_value_rule"].as_str().unwrap() {
            "omit" => EmptyValues::Omit,
            "include" => EmptyValues::Include,
            other => panic!("{name}: rule {other}"),
        };
        let unsigned = v["unsigned"].as_str().unwrap();
        let s = signing_string_of(pairs.iter().copied(), rule);
        assert_eq!(format!("{s}{}", key.expose()), unsigned, "{name}");
        assert_eq!(hex_lower(unsigned.as_bytes()), v["unsigned_utf8_hex"].as_str().unwrap(), "{name}");
        assert_eq!(sign_string(&s, &key, SignAlg::Md5), v["md5"].as_str().unwrap(), "{name} md5");
        assert_eq!(sign_string(&s, &key, SignAlg::Sha256), v["sha256"].as_str().unwrap(), "{name} sha256");
        if rule == EmptyValues::Omit {
            // The production path: Params drops empties, signs, and encodes the same parameters.
            let params: Params = pairs.iter().copied().collect();
            assert_eq!(sign(&params, &key, SignAlg::Md5), v["md5"].as_str().unwrap(), "{name}");
            assert_eq!(sign(&params, &key, SignAlg::Sha256), v["sha256"].as_str().unwrap(), "{name}");
            assert_eq!(params.form_body(), v["form_body"].as_str().unwrap(), "{name} body");
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[test]
fn the_notification_vector_verifies_over_raw_bytes_only() {
    let v = vectors().into_iter().find(|v| v["kind"] == "notification").unwrap();
    let key = ClientKey::new(v["key"].as_str().unwrap());
    let body = v["raw_body"].as_str().unwrap().as_bytes();
    let md5 = v["md5"].as_str().unwrap();
    assert_eq!(notification_signature(body, &key, SignAlg::Md5), md5);
    assert!(verify_notification(body, &key, SignAlg::Md5, md5));
    assert!(verify_notification(body, &key, SignAlg::Md5, &md5.to_lowercase()));
    // Re-serialised JSON (compact separators) is a different text: the check must fail.
    let reserialised = serde_json::to_vec(&serde_json::from_slice::<Value>(body).unwrap()).unwrap();
    assert!(!verify_notification(&reserialised, &key, SignAlg::Md5, md5));
    assert!(!verify_notification(body, &ClientKey::new("other"), SignAlg::Md5, md5));
}
