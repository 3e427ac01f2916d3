//! The envelope and manners every answer keeps, the framework's own rejections included: a key
//! twice, a body that is not JSON, an amount as a string, an unknown route, a wrong method, a
//! body too large, a query that does not parse; and `Retry-After` on `503`.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use testkit::{RedisServer, TestRedis};

async fn raw(api: &Api, method: reqwest::Method, path: &str, ct: Option<&str>, body: &str) -> reqwest::Response {
    let mut req = api.http.request(method, format!("{}{path}", api.url)).bearer_auth(OPERATOR).body(body.to_owned());
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    req.send().await.unwrap()
}

async fn envelope(r: reqwest::Response, status: StatusCode, code: &str) -> (reqwest::header::HeaderMap, Value) {
    assert_eq!(r.status(), status);
    let headers = r.headers().clone();
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"), "{headers:?}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty(), "{body}");
    (headers, body)
}

#[tokio::test]
async fn every_rejection_is_in_the_json_envelope() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-contract").await;
    let good = r#"{"syssn":"20231234567890","out_trade_no":"RF-C1","txamt":100}"#;
    let post = reqwest::Method::POST;

    // A key given twice is refused, not read as its last value (nothing is written).
    let twice = r#"{"syssn":"20231234567890","out_trade_no":"RF-C1","txamt":1,"txamt":100000}"#;
    let (_, body) = envelope(
        raw(&api, post.clone(), "/v1/refunds", Some("application/json"), twice).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("given twice"), "{body}");
    assert!(api.ledger.get("default", "RF-C1").await.unwrap().is_none());

    // Money is a JSON integer.
    let string = r#"{"syssn":"20231234567890","out_trade_no":"RF-C1","txamt":"100"}"#;
    let (_, body) = envelope(
        raw(&api, post.clone(), "/v1/refunds", Some("application/json"), string).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    )
    .await;
    assert_eq!(body["fields"][0]["field"], "txamt", "{body}");

    // The body must say it is JSON (a form post, or none at all, is 415), on every write.
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        envelope(
            raw(&api, post.clone(), "/v1/refunds", ct, good).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
        envelope(
            raw(&api, post.clone(), "/v1/refunds/RF-C1/cancel", ct, r#"{"reason":"x"}"#).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    assert!(api.ledger.get("default", "RF-C1").await.unwrap().is_none());
    let r = raw(&api, post.clone(), "/v1/refunds", Some("application/json; charset=utf-8"), good).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // The framework's own answers.
    envelope(raw(&api, reqwest::Method::GET, "/v1/nothing-here", None, "").await, StatusCode::NOT_FOUND, "not_found")
        .await;
    let (headers, _) = envelope(
        raw(&api, reqwest::Method::DELETE, "/v1/refunds", None, "").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    assert!(headers["allow"].to_str().unwrap().contains("POST"), "{headers:?}");
    // A wrong method is 405 before the body's type is looked at.
    envelope(
        raw(&api, reqwest::Method::PUT, "/v1/refunds", Some("text/plain"), "x").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let big = format!(r#"{{"reason":"{}"}}"#, "x".repeat(64 * 1024));
    envelope(
        raw(&api, post.clone(), "/v1/refunds/RF-C1/cancel", Some("application/json"), &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    let (_, body) = envelope(
        raw(&api, reqwest::Method::GET, "/v1/refunds?limit=many", None, "").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("limit"), "{body}");
    // A cursor left empty is the first page.
    let r = raw(&api, reqwest::Method::GET, "/v1/refunds?cursor=", None, "").await;
    assert_eq!(r.status(), StatusCode::OK);
    // An audit position past what a stream id holds is refused, not sent to Redis.
    envelope(
        raw(&api, reqwest::Method::GET, "/v1/audit?after=99999999999999999999", None, "").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    )
    .await;
}

#[tokio::test]
async fn unavailable_says_when_to_come_back() {
    let mut redis = RedisServer::start().unwrap();
    let api = Api::start(&redis.url(), "api-contract-503").await;
    redis.kill();
    let r = raw(&api, reqwest::Method::GET, "/readyz", None, "").await;
    let (headers, _) = envelope(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().is_ok(), "{headers:?}");
}

/// The document says what the server does: links from a created refund, every error described,
/// `Retry-After` on 503, the rules of ids and amounts.
#[test]
fn the_document_is_as_strict_as_the_server() {
    let doc = qfrefund_api::openapi();
    let create = &doc["paths"]["/v1/refunds"]["post"];
    assert_eq!(create["responses"]["202"]["links"]["GetRefund"]["operationId"], "merchant_get_one");
    for code in ["413", "415", "422", "503", "504"] {
        assert!(create["responses"].get(code).is_some(), "POST /v1/refunds documents {code}");
    }
    // A write that runs out of time may have been applied: 504 (outcome unknown), never a 408
    // that a client could read as "nothing was changed".
    assert!(create["responses"].get("408").is_none());
    assert!(create["responses"]["504"]["headers"].get("Retry-After").is_some());
    let get = &doc["paths"]["/v1/merchants/{merchant}/refunds/{out_trade_no}"]["get"];
    assert!(get["responses"].get("408").is_some());
    assert!(create["responses"]["503"]["headers"].get("Retry-After").is_some());
    let new = &doc["components"]["schemas"]["NewRefund"];
    assert_eq!(new["additionalProperties"], false);
    assert_eq!(new["properties"]["txamt"]["maximum"], 99_999_999_999u64);
    assert_eq!(new["properties"]["txamt"]["minimum"], 1);
    assert!(new["properties"].get("traceparent").is_none(), "the trace comes in a header");
    let get = &doc["paths"]["/v1/merchants/{merchant}/refunds/{out_trade_no}"]["get"];
    let otn = get["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "out_trade_no").unwrap();
    assert_eq!(otn["schema"]["pattern"], "^[A-Za-z0-9_-]{1,128}$");
    let list = &doc["paths"]["/v1/refunds"]["get"];
    let state = list["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "state").unwrap();
    assert_eq!(state["schema"]["enum"].as_array().unwrap().len(), ledger::State::ALL.len());
    assert_eq!(doc["components"]["schemas"]["ActionBody"]["properties"]["reason"]["minLength"], 1);
}
