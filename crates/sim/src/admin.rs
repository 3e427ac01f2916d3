//! The simulator's own endpoints, for tests and load runs (not part of QFPay's API): its audit of
//! every refund applied, counters, faults to inject, payments to add, and a clock offset.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::bank::PaymentSeed;
use crate::faults::Faults;
use crate::http::Shared;

pub(crate) async fn audit(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let now = shared.now_ms();
    Json(shared.bank().audit(now))
}

pub(crate) async fn stats(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(&shared.bank().stats).unwrap_or_default())
}

pub(crate) async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.faults())
}

/// Merges the given fields into the current faults: `{"processing": 0.5}` changes only that.
pub(crate) async fn patch_faults(State(shared): State<Arc<Shared>>, Json(patch): Json<serde_json::Value>) -> Response {
    let mut current = serde_json::to_value(shared.faults()).unwrap_or_default();
    let (Some(obj), Some(fields)) = (current.as_object_mut(), patch.as_object()) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "expected a JSON object of fault fields").into_response();
    };
    for (k, v) in fields {
        obj.insert(k.clone(), v.clone());
    }
    let faults: Faults = match serde_json::from_value(current) {
        Ok(f) => f,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    };
    match shared.set_faults(faults.clone()) {
        Ok(()) => Json(faults).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
    }
}

pub(crate) async fn add_payments(State(shared): State<Arc<Shared>>, Json(seeds): Json<Vec<PaymentSeed>>) -> Response {
    let now = shared.now_ms();
    match shared.bank().add_payments(seeds, now) {
        Ok(n) => Json(serde_json::json!({"added": n})).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct Clock {
    offset_ms: i64,
}

pub(crate) async fn set_clock(State(shared): State<Arc<Shared>>, Json(c): Json<Clock>) -> Json<serde_json::Value> {
    shared.clock_offset_ms.store(c.offset_ms, Ordering::Relaxed);
    Json(serde_json::json!({"offset_ms": c.offset_ms, "now_ms": shared.now_ms()}))
}
