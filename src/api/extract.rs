//! JSON body extraction with the API's errors: 415 for a wrong content type, 413 past the
//! body limit, 400 naming the field (its JSON path) that did not parse.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::messages::page::Page;

/// The default and the largest page of a list endpoint (`limit`).
pub const PAGE: usize = 100;
pub const PAGE_MAX: usize = 1000;

/// A JSON body that must be present.
pub struct JsonBody<T>(pub T);

/// A JSON body that may be empty or `null` (then `T::default()`).
pub struct OptionalJsonBody<T>(pub T);

fn check_content_type(req: &Request) -> Result<(), ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else if ct.is_empty() {
        Err(ApiError::UnsupportedMediaType(
            "missing Content-Type: expected application/json".to_string(),
        ))
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {ct:?}: expected application/json"
        )))
    }
}

async fn body_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.limits.max_body_bytes,
            }
        } else {
            ApiError::BadRequest(format!("could not read the body: {}", rej.body_text()))
        }
    })
}

/// Parses JSON; the error names the path of the field that failed.
///
/// Valid bodies take plain serde_json; only a body that fails is parsed a second time
/// through serde_path_to_error, for the field's path (tracking the path of every field
/// took most of the ingest handler's parse time in profiles).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|plain| match parse_json_tracking_path::<T>(bytes) {
        Err(with_path) => with_path,
        // Not expected: both parsers read the same grammar into the same type.
        Ok(_) => ApiError::BadRequest(format!("invalid JSON: {plain}")),
    })
}

fn parse_json_tracking_path<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // A cut-off body has no field to name (the path ends in `?`).
        if path == "." || path.is_empty() || path.contains('?') {
            ApiError::BadRequest(format!("invalid JSON: {inner}"))
        } else {
            ApiError::BadRequest(format!("invalid JSON at `{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    Ok(value)
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        check_content_type(&req)?;
        let bytes = body_bytes(req, state).await?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        if has_type {
            check_content_type(&req)?;
        }
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        if !has_type {
            return Err(ApiError::UnsupportedMediaType(
                "missing Content-Type: expected application/json".to_string(),
            ));
        }
        let body: Option<T> = parse_json(&bytes)?;
        Ok(OptionalJsonBody(body.unwrap_or_default()))
    }
}

/// The `match` query parameter (label matchers like `{gpu="0", Hostname=~"node-.*"}`); none
/// matches every series. A bad one is a 400 naming the parameter.
pub fn match_param(text: Option<&str>) -> Result<crate::model::selector::Selector, ApiError> {
    match text {
        Some(m) => crate::promql::parse_matchers(m)
            .map_err(|e| ApiError::BadRequest(format!("match: {e}"))),
        None => Ok(Default::default()),
    }
}

/// `limit`: `default` when absent, else 1 to `max`; the error names the parameter.
pub fn limit_param(limit: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if limit == 0 || limit > max {
        return Err(ApiError::BadRequest(format!(
            "limit: {limit} is out of range (1-{max})"
        )));
    }
    Ok(limit)
}

/// The paging fields every list answer shows, beside its items.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Paging {
    /// Items that pass the filters, on every page.
    pub total: usize,
    /// Items skipped.
    pub offset: usize,
    /// Items at most on a page; null: every item.
    pub limit: Option<usize>,
    /// Items on this page.
    pub count: usize,
}

impl Paging {
    /// `count` items of `total`, `offset` items in, at most `limit`.
    pub fn new(total: usize, offset: usize, limit: Option<usize>, count: usize) -> Self {
        Paging {
            total,
            offset,
            limit,
            count,
        }
    }

    /// The paging of `page`, `offset` items in, at most `limit`.
    pub fn of<T>(page: &Page<T>, offset: usize, limit: Option<usize>) -> Self {
        Paging::new(page.total, offset, limit, page.items.len())
    }

    /// An empty list's (a component that does not run).
    pub fn empty(offset: usize, limit: Option<usize>) -> Self {
        Paging::new(0, offset, limit, 0)
    }
}

/// One page of a whole list: `offset` items skipped, at most `limit` (1 to `max`; every
/// item when absent) kept. Answers the page and its paging.
pub fn page<T>(
    items: Vec<T>,
    offset: Option<usize>,
    limit: Option<usize>,
    max: usize,
) -> Result<(Vec<T>, Paging), ApiError> {
    if let Some(l) = limit {
        limit_param(Some(l), l, max)?;
    }
    let offset = offset.unwrap_or(0);
    let page = Page::of(items.into_iter(), offset, limit.unwrap_or(usize::MAX));
    let paging = Paging::of(&page, offset, limit);
    Ok((page.items, paging))
}

/// `window_s`: `default` (at most `max`) when absent, else 1 to `max`, the window store's
/// retention.
pub fn window_param(window_s: Option<u64>, default: u64, max: u64) -> Result<u64, ApiError> {
    let window_s = window_s.unwrap_or(default.min(max));
    if window_s == 0 || window_s > max {
        return Err(ApiError::BadRequest(format!(
            "window_s: {window_s} is out of range (1-{max}, the window store's retention)"
        )));
    }
    Ok(window_s)
}

/// A numeric id from the path; 400 naming what it should have been otherwise.
pub fn id_param(id: &str, what: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::BadRequest(format!("id: {id:?} is not {what} id (a number)")))
}

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn a_list_page_checks_its_limit_and_says_its_paging() {
        let (items, fields) = page(vec![1, 2, 3, 4], Some(1), Some(2), 10).unwrap();
        assert_eq!(items, [2, 3]);
        assert_eq!(
            serde_json::to_value(fields).unwrap(),
            serde_json::json!({"total": 4, "offset": 1, "limit": 2, "count": 2})
        );
        let (items, fields) = page(vec![1, 2], Some(5), None, 10).unwrap();
        assert!(items.is_empty());
        assert_eq!(fields.limit, None);
        assert_eq!(fields.count, 0);
        assert!(page(vec![1], None, Some(11), 10).is_err());
        assert!(page(vec![1], None, Some(0), 10).is_err());
    }
}
