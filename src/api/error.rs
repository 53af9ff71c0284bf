//! The one API error type: user errors are shown, internal ones hidden (and logged).
//! Every error body is `{"error": "...", "detail": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Every error's body.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error, example = json!(
    {"error": "bad request", "detail": "limit: 0 is out of range (1-1000)"}))]
pub struct ErrorBody {
    /// What kind of error: `bad request`, `not found`, `unavailable`, ...
    pub error: &'static str,
    /// What went wrong, naming the field or the component.
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; `detail` names the field.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or a wrong bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 405
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with the resource's state.
    #[error("{0}")]
    Conflict(String),
    /// 422: well-formed but refused (e.g. rule files that do not load).
    #[error("{0}")]
    Unprocessable(String),
    /// 413
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 414
    #[error("the request target is {len} bytes (at most {limit})")]
    UriTooLong { len: usize, limit: usize },
    /// 415
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 431: too many header fields, or too many bytes of them.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// 503: a component is down or busy; retrying later can succeed.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged, not shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload too large")
            }
            ApiError::UriTooLong { .. } => (StatusCode::URI_TOO_LONG, "URI too long"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported media type")
            }
            ApiError::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request header fields too large",
            ),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = self.parts();
        let detail = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "see the server log".to_string()
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(ErrorBody { error, detail })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"pulse\""),
            );
        }
        response
    }
}
