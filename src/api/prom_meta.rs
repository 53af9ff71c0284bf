//! Prometheus' metadata API, in its shapes, for Grafana's metric browser and label
//! variables: `GET /api/v1/labels`, `GET /api/v1/label/{name}/values`, and
//! `GET /api/v1/series` when called with `match[]` (with `match`, the same path answers in
//! Pulse's shape, with the points: `web::series`). They read the series the window store
//! holds; `match[]` (repeatable) narrows them, `start` keeps those with a point since then.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::prom::{bad_data, parse_time, PromError, PromErrorBody, PromSuccess};
use super::AppState;
use crate::model::selector::Selector;
use crate::model::series::Series;
use crate::store::messages::SelectLatest;

/// More series than this in one answer is refused, as `/api/v1/series` does in Pulse's shape.
const MAX_SERIES: usize = 10_000;

/// Whether a query string is Prometheus' (`match[]`) rather than Pulse's (`match`).
pub fn is_prometheus(uri: &Uri) -> bool {
    pairs(uri).is_ok_and(|p| p.iter().any(|(k, _)| k == "match[]"))
}

fn pairs(uri: &Uri) -> Result<Vec<(String, String)>, PromError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(p)| p)
        .map_err(|e| bad_data(e.body_text()))
}

/// The series matching every `match[]` selector given (all series when none is), with a
/// point at or after `start`.
async fn matching(state: &AppState, uri: &Uri) -> Result<Vec<Series>, PromError> {
    let pairs = pairs(uri)?;
    let mut selectors = Vec::new();
    let mut since_ms = i64::MIN;
    for (key, value) in &pairs {
        match key.as_str() {
            "match[]" => selectors.push(
                crate::promql::parse_matchers(value)
                    .map_err(|e| bad_data(format!("invalid parameter \"match[]\": {e}")))?,
            ),
            "start" => {
                since_ms = parse_time(value)
                    .map_err(|e| bad_data(format!("invalid parameter \"start\": {e}")))?
            }
            // Prometheus takes `end` and `limit` too; the store holds only recent points.
            _ => {}
        }
    }
    if selectors.is_empty() {
        selectors.push(Selector::default());
    }
    let mut found: BTreeMap<String, Series> = BTreeMap::new();
    for selector in selectors {
        let latest = state
            .handles
            .window
            .send(SelectLatest { selector, since_ms })
            .await
            .map_err(|e| {
                let message = format!("the window store did not answer: {e}");
                PromError(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            })?;
        for (series, ..) in latest {
            found.entry(series.to_string()).or_insert(series);
        }
        if found.len() > MAX_SERIES {
            return Err(bad_data(format!(
                "more than {MAX_SERIES} series match; narrow \"match[]\""
            )));
        }
    }
    Ok(found.into_values().collect())
}

/// A series' labels, `__name__` among them, as Prometheus lists them.
fn label_set(s: &Series) -> BTreeMap<String, String> {
    let mut set: BTreeMap<String, String> = s
        .labels()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    set.insert("__name__".to_string(), s.name().to_string());
    set
}

/// The label sets of series, as Prometheus lists them.
pub type LabelSets = PromSuccess<Vec<BTreeMap<String, String>>>;
/// Label names or values, as Prometheus lists them.
pub type Strings = PromSuccess<Vec<String>>;

/// `GET /api/v1/series?match[]=...`: the label sets of matching series.
pub async fn series(state: AppState, uri: Uri) -> Result<LabelSets, Response> {
    match matching(&state, &uri).await {
        Ok(found) => Ok(LabelSets::new(found.iter().map(label_set).collect())),
        Err(e) => Err(e.into_response()),
    }
}

/// `GET /api/v1/labels`: the label names of matching series, `__name__` included.
#[utoipa::path(get, path = "/api/v1/labels", operation_id = "prometheus_labels", tag = "prometheus",
    summary = "label names of matching series, as Prometheus answers",
    params(
        ("match[]" = Option<Vec<String>>, Query, style = Form, explode,
            description = "a series selector (repeatable), as Prometheus takes it"),
        ("start" = Option<String>, Query,
            description = "series with a point since then (Unix seconds or RFC 3339)"),
    ),
    responses(
        (status = 200, description = "the names, sorted", body = PromSuccess<Vec<String>>),
        (status = 400, description = "a bad selector or time, or too many series", body = PromErrorBody),
        (status = 503, description = "the window store did not answer", body = PromErrorBody),
    ))]
pub async fn labels(State(state): State<AppState>, uri: Uri) -> Response {
    match matching(&state, &uri).await {
        Ok(found) => {
            let names: BTreeSet<String> = found
                .iter()
                .flat_map(|s| label_set(s).into_keys())
                .collect();
            Json(Strings::new(names.into_iter().collect())).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/label/{name}/values`: the values `name` takes in matching series.
#[utoipa::path(get, path = "/api/v1/label/{name}/values", operation_id = "prometheus_label_values",
    tag = "prometheus", summary = "values of one label in matching series, as Prometheus answers",
    params(
        ("name" = String, Path, description = "the label, e.g. `gpu` or `__name__`"),
        ("match[]" = Option<Vec<String>>, Query, style = Form, explode,
            description = "a series selector (repeatable), as Prometheus takes it"),
        ("start" = Option<String>, Query,
            description = "series with a point since then (Unix seconds or RFC 3339)"),
    ),
    responses(
        (status = 200, description = "the values, sorted", body = PromSuccess<Vec<String>>),
        (status = 400, description = "a bad selector or time, or too many series", body = PromErrorBody),
        (status = 503, description = "the window store did not answer", body = PromErrorBody),
    ))]
pub async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
) -> Response {
    match matching(&state, &uri).await {
        Ok(found) => {
            let values: BTreeSet<String> = found
                .iter()
                .filter_map(|s| label_set(s).remove(&name))
                .collect();
            Json(Strings::new(values.into_iter().collect())).into_response()
        }
        Err(e) => e.into_response(),
    }
}
