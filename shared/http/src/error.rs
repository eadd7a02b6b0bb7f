//! JSON errors: `{"error": "<sentence>", "field": "<name>"?}`, so a sender can fix its request
//! without reading our logs.

use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub field: Option<String>,
    /// Extra members of the body (the incident id of an alert whose pipeline did not start).
    pub extra: Map<String, Value>,
    pub bearer_challenge: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            field: None,
            extra: Map::new(),
            bearer_challenge: false,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// 401 with `WWW-Authenticate: Bearer`, as RFC 6750 asks.
    pub fn unauthorized(error: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, error);
        e.bearer_challenge = true;
        e
    }

    pub fn not_found(error: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, error)
    }

    /// A failure of ours (store, runtime): the detail goes to the log, the caller gets a
    /// sentence that leaks nothing about the backend.
    pub fn unavailable(what: &str, detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "{what}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}; try again shortly."),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(self.error));
        if let Some(f) = self.field {
            body.insert("field".into(), Value::String(f));
        }
        body.extend(self.extra);
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if self.bearer_challenge {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
