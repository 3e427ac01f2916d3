//! Every error the API answers with: a status and a JSON body saying what was wrong, and where.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One field in error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub problem: String,
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `unauthorized`, `forbidden`, `not_found`, `invalid`, `conflict`, `refused`,
    /// `unavailable` (503: nothing was written), `outcome_unknown` (504: the change may or may not
    /// have been made — retry the same request, with the same `out_trade_no`).
    pub error: String,
    pub message: String,
    /// For `invalid`: each field in error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldProblem>,
    /// For `conflict`: how the request differs from the refund already recorded, and that refund.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub existing: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("invalid request")]
    Invalid(Vec<FieldProblem>),
    #[error("{message}")]
    Conflict { message: String, differences: Vec<String>, existing: serde_json::Value },
    /// The request is well-formed but the ledger refused it (e.g. retrying a final refund).
    #[error("{0}")]
    Refused(String),
    /// Nothing was written (Redis refused before running it, or could not be reached).
    #[error("{0}")]
    Unavailable(String),
    /// A write was sent but its answer never came (Redis timed out, the connection dropped, the
    /// request ran out of time): it may have been applied. Producers must retry with the same
    /// `out_trade_no`, never under a new one.
    #[error("{0}")]
    OutcomeUnknown(String),
}

impl ApiError {
    /// What went wrong, for a person (a field's problem named with its field).
    pub fn to_string_for_people(&self) -> String {
        match self {
            ApiError::Invalid(problems) => {
                problems.iter().map(|p| format!("{}: {}", p.field, p.problem)).collect::<Vec<_>>().join("; ")
            }
            other => other.to_string(),
        }
    }

    pub fn invalid(field: &str, problem: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldProblem { field: field.into(), problem: problem.into() }])
    }

    /// The answer to a failed *write*: says whether it may have been applied.
    pub fn from_write(e: ledger::LedgerError) -> Self {
        use ledger::LedgerError as L;
        match e {
            e @ (L::Redis(_) | L::NotReplicated(_) | L::Script(_) | L::Corrupt(_)) if e.outcome_unknown() => {
                tracing::error!(error = %e, "ledger write: outcome unknown");
                ApiError::outcome_unknown(&format!("the ledger did not confirm the write ({})", short(&e)))
            }
            L::Redis(e) => {
                tracing::error!(error = %e, "ledger write refused before it ran");
                ApiError::Unavailable(format!(
                    "the ledger is unavailable ({}); nothing was written: retry later with the same out_trade_no",
                    e.code().unwrap_or(e.category())
                ))
            }
            other => other.into(),
        }
    }

    /// A write that may or may not have been applied.
    pub fn outcome_unknown(why: &str) -> Self {
        ApiError::OutcomeUnknown(format!("{}; {why}", ledger::OUTCOME_UNKNOWN_ADVICE))
    }
}

/// What went wrong, without details that belong in the logs only.
fn short(e: &ledger::LedgerError) -> &'static str {
    match e {
        ledger::LedgerError::Redis(r) if r.is_timeout() => "Redis timed out",
        ledger::LedgerError::Redis(_) => "the Redis connection failed",
        ledger::LedgerError::NotReplicated(_) => "too few replicas confirmed it in time",
        _ => "an unexpected answer",
    }
}

impl From<ledger::LedgerError> for ApiError {
    fn from(e: ledger::LedgerError) -> Self {
        use ledger::LedgerError as L;
        match e {
            L::Invalid(f) => ApiError::invalid(f.field, f.rule),
            L::Conflict { out_trade_no, differences, existing } => ApiError::Conflict {
                message: format!("out_trade_no {out_trade_no} exists with other details: nothing was changed"),
                differences,
                existing: serde_json::to_value(&existing).unwrap_or_default(),
            },
            L::PaidMismatch { .. } => ApiError::invalid("orig_txamt", e.to_string()),
            L::NotReplicated(_) => ApiError::outcome_unknown(&e.to_string()),
            // Redis errors and corrupt records on reads: say what, keep the details in the logs.
            // (Writes go through [`ApiError::from_write`], which says whether anything was written.)
            other => {
                tracing::error!(error = %other, "ledger error");
                ApiError::Unavailable("the ledger is unavailable; retry later".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            ApiError::Refused(_) => (StatusCode::CONFLICT, "refused"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::OutcomeUnknown(_) => (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown"),
        };
        let message = match &self {
            ApiError::Invalid(f) => {
                format!(
                    "invalid request: {}",
                    f.iter().map(|p| format!("{}: {}", p.field, p.problem)).collect::<Vec<_>>().join("; ")
                )
            }
            other => other.to_string(),
        };
        let mut body = ErrorBody { error: code.into(), message, fields: vec![], differences: vec![], existing: None };
        match self {
            ApiError::Invalid(f) => body.fields = f,
            ApiError::Conflict { differences, existing, .. } => {
                body.differences = differences;
                body.existing = Some(existing);
            }
            _ => {}
        }
        let mut resp = (status, Json(body)).into_response();
        if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT) {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
