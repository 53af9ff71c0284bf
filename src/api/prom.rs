//! Prometheus' HTTP query API over the window store: `GET|POST /api/v1/query` and
//! `/api/v1/query_range`, with Prometheus' parameters (`query`, `time`, `start`, `end`,
//! `step`, as Unix seconds or RFC 3339) and response shapes (`{"status":"success","data":
//! {"resultType", "result"}}`, errors as `{"status":"error","errorType","error"}`), so
//! Grafana can use Pulse as a Prometheus data source for recent data. A range query is
//! evaluated in chunks of steps, each a short read on the store's thread, so ingest goes
//! on between them.

use std::collections::BTreeMap;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use crate::promql::{self, EvalError, Evaluator, Labels, SampleBudget, Value};
use crate::store::messages::ReadStore;

/// Points one range query may return per series (Prometheus' limit).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;
/// Steps evaluated per read of the store.
const STEPS_PER_READ: usize = 32;

/// An instant query's parameters, in the query string or a form body.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct InstantParams {
    /// The PromQL expression.
    #[param(required = true, example = "avg by (gpu) (DCGM_FI_DEV_GPU_UTIL)")]
    #[schema(required = true)]
    query: Option<String>,
    /// When: Unix seconds or RFC 3339 (default: now).
    time: Option<String>,
    /// Accepted and ignored (Prometheus' per-query timeout).
    #[allow(dead_code)]
    timeout: Option<String>,
}

/// A range query's parameters, in the query string or a form body.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// The PromQL expression (a scalar or an instant vector).
    #[param(required = true, example = "max_over_time(DCGM_FI_DEV_GPU_TEMP[1m])")]
    #[schema(required = true)]
    query: Option<String>,
    /// The first step: Unix seconds or RFC 3339.
    #[param(required = true, example = "2026-12-04T10:00:00Z")]
    #[schema(required = true)]
    start: Option<String>,
    /// The last step at most: Unix seconds or RFC 3339.
    #[param(required = true, example = "2026-12-04T10:30:00Z")]
    #[schema(required = true)]
    end: Option<String>,
    /// Between steps: a duration (`15s`) or seconds (`15`); at most 11 000 steps.
    #[param(required = true, example = "15s")]
    #[schema(required = true)]
    step: Option<String>,
    /// Accepted and ignored (Prometheus' per-query timeout).
    #[allow(dead_code)]
    timeout: Option<String>,
}

/// A sample as Prometheus writes one: `[Unix seconds, "value"]`, the value a string
/// (shortest digits, `NaN`, `+Inf`), or a string result's text.
#[derive(Debug, Serialize)]
pub struct SamplePair(f64, String);

impl SamplePair {
    fn new(t_ms: i64, v: f64) -> Self {
        SamplePair(t_ms as f64 / 1000.0, value_text(v))
    }
}

impl utoipa::PartialSchema for SamplePair {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, Type};
        ArrayBuilder::new()
            .description(Some("`[Unix seconds, \"value\"]`"))
            .prefix_items([
                ObjectBuilder::new().schema_type(Type::Number),
                ObjectBuilder::new().schema_type(Type::String),
            ])
            .items(ArrayItems::False)
            .min_items(Some(2))
            .into()
    }
}

impl ToSchema for SamplePair {}

/// One series of an instant vector.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstantSample {
    /// Its labels, `__name__` among them unless a function dropped it.
    metric: BTreeMap<String, String>,
    value: SamplePair,
}

/// One series of a range query's matrix.
#[derive(Debug, Serialize, ToSchema)]
pub struct RangeSeries {
    /// Its labels.
    metric: BTreeMap<String, String>,
    /// Its points, oldest first.
    values: Vec<SamplePair>,
}

/// `data` of a query: the result's type and the result.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryData {
    /// A number.
    Scalar(SamplePair),
    /// A string.
    String(SamplePair),
    /// One sample per series.
    Vector(Vec<InstantSample>),
    /// Points per series (a range query's result, or a range selector's).
    Matrix(Vec<RangeSeries>),
}

/// A Prometheus API error: status, `errorType`, `error`.
pub(super) struct PromError(pub StatusCode, pub &'static str, pub String);

/// Prometheus' error envelope.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PromErrorBody {
    /// Always `error`.
    #[schema(value_type = String, pattern = "^error$")]
    status: &'static str,
    /// `bad_data`, `execution` or `unavailable`.
    #[serde(rename = "errorType")]
    #[schema(value_type = String)]
    error_type: &'static str,
    /// What went wrong.
    error: String,
}

/// Prometheus' success envelope around `data`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PromSuccess<T> {
    /// Always `success`.
    #[schema(value_type = String, pattern = "^success$")]
    status: &'static str,
    data: T,
}

impl<T> PromSuccess<T> {
    pub fn new(data: T) -> Self {
        PromSuccess {
            status: "success",
            data,
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let PromError(status, error_type, error) = self;
        let body = PromErrorBody {
            status: "error",
            error_type,
            error,
        };
        (status, Json(body)).into_response()
    }
}

/// Runs an evaluation on the store's thread: 422 `execution` when it fails, 503 when the
/// store is gone.
async fn run<R: Send + 'static>(
    state: &AppState,
    read: ReadStore<Result<R, String>>,
) -> Result<R, PromError> {
    match state.handles.window.send(read).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(PromError(StatusCode::UNPROCESSABLE_ENTITY, "execution", e)),
        Err(e) => Err(PromError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("window store is not running: {e}"),
        )),
    }
}

pub(super) fn bad_data(message: impl Into<String>) -> PromError {
    PromError(StatusCode::BAD_REQUEST, "bad_data", message.into())
}

/// Unix seconds (`1700000000.5`) or RFC 3339 (`2023-11-14T22:13:20Z`) to Unix ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs.abs() < 1e13 {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    parse_rfc3339(s).ok_or_else(|| format!("cannot parse {s:?} to a valid timestamp"))
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(zone_at);
    let mut c = clock.split(':');
    let (h, min): (i64, i64) = (c.next()?.parse().ok()?, c.next()?.parse().ok()?);
    let sec: f64 = c.next().unwrap_or("0").parse().ok()?;
    let offset_min = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (oh, om) = z[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?)
        }
    };
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || h > 23
        || min > 59
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    let days = crate::promql::days_from_civil(y, m, day);
    let secs = days * 86_400 + h * 3600 + min * 60 - offset_min * 60;
    Some(secs * 1000 + (sec * 1000.0).round() as i64)
}

/// A step: Prometheus' duration (`15s`, `1m`) or seconds (`15`, `0.5`).
fn parse_step(s: &str) -> Result<i64, String> {
    let ms = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() => (secs * 1000.0).round() as i64,
        _ => crate::rules::parse_duration_ms(s)?,
    };
    if ms <= 0 {
        return Err("zero or negative query resolution step widths are not accepted. Try a positive integer".to_string());
    }
    Ok(ms)
}

/// A sample value as Prometheus writes it: shortest digits, no exponent, `NaN`, `+Inf`.
fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

fn metric(labels: &Labels) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn query_text(query: &Option<String>) -> Result<promql::Query, PromError> {
    let text = query
        .as_deref()
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| bad_data("invalid parameter \"query\": no query given"))?;
    promql::parse(text).map_err(|e| bad_data(format!("invalid parameter \"query\": {e}")))
}

/// The parameters, or the Prometheus-shaped error of a request axum could not read (a body
/// that is not a form, bad percent-encoding): `bad_data`, with axum's status (400 or 415).
fn params<P, R>(read: Result<P, R>) -> Result<P, PromError>
where
    R: IntoResponse + std::fmt::Display,
{
    read.map_err(|rejection| {
        let message = rejection.to_string();
        PromError(rejection.into_response().status(), "bad_data", message)
    })
}

/// `GET /api/v1/query`.
#[utoipa::path(get, path = "/api/v1/query", operation_id = "prometheus_query", tag = "prometheus",
    summary = "an instant query, as Prometheus answers it",
    params(InstantParams),
    responses(
        (status = 200, description = "the result", body = PromSuccess<QueryData>),
        (status = 400, description = "a bad or missing parameter", body = PromErrorBody),
        (status = 422, description = "the evaluation failed (too many samples, a bad operation)", body = PromErrorBody),
        (status = 503, description = "the window store is not running", body = PromErrorBody),
    ))]
pub async fn query_get(
    State(state): State<AppState>,
    p: Result<Query<InstantParams>, QueryRejection>,
) -> Response {
    match params(p) {
        Ok(Query(p)) => query(state, p).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/query` (form-encoded, as Grafana sends it).
#[utoipa::path(post, path = "/api/v1/query", operation_id = "prometheus_query_form", tag = "prometheus",
    summary = "the same, the parameters in a form body (Grafana's default)",
    request_body(content = InstantParams, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "the result", body = PromSuccess<QueryData>),
        (status = 400, description = "a bad or missing parameter", body = PromErrorBody),
        (status = 415, description = "the body is not a form", body = PromErrorBody),
        (status = 422, description = "the evaluation failed (too many samples, a bad operation)", body = PromErrorBody),
        (status = 503, description = "the window store is not running", body = PromErrorBody),
    ))]
pub async fn query_post(
    State(state): State<AppState>,
    p: Result<Form<InstantParams>, FormRejection>,
) -> Response {
    match params(p) {
        Ok(Form(p)) => query(state, p).await,
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/query_range`.
#[utoipa::path(get, path = "/api/v1/query_range", operation_id = "prometheus_query_range",
    tag = "prometheus", summary = "a range query, as Prometheus answers it",
    params(RangeParams),
    responses(
        (status = 200, description = "the result (a matrix)", body = PromSuccess<QueryData>),
        (status = 400, description = "a bad or missing parameter, or too many steps", body = PromErrorBody),
        (status = 422, description = "the evaluation failed (too many samples, a bad operation)", body = PromErrorBody),
        (status = 503, description = "the window store is not running", body = PromErrorBody),
    ))]
pub async fn query_range_get(
    State(state): State<AppState>,
    p: Result<Query<RangeParams>, QueryRejection>,
) -> Response {
    match params(p) {
        Ok(Query(p)) => query_range(state, p).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/query_range`.
#[utoipa::path(post, path = "/api/v1/query_range", operation_id = "prometheus_query_range_form",
    tag = "prometheus", summary = "the same, the parameters in a form body",
    request_body(content = RangeParams, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "the result (a matrix)", body = PromSuccess<QueryData>),
        (status = 400, description = "a bad or missing parameter, or too many steps", body = PromErrorBody),
        (status = 415, description = "the body is not a form", body = PromErrorBody),
        (status = 422, description = "the evaluation failed (too many samples, a bad operation)", body = PromErrorBody),
        (status = 503, description = "the window store is not running", body = PromErrorBody),
    ))]
pub async fn query_range_post(
    State(state): State<AppState>,
    p: Result<Form<RangeParams>, FormRejection>,
) -> Response {
    match params(p) {
        Ok(Form(p)) => query_range(state, p).await,
        Err(e) => e.into_response(),
    }
}

/// `expr` at `t_ms`, reading at most `max` samples (0: no limit).
fn evaluate(
    store: &crate::store::window::WindowStore,
    t_ms: i64,
    expr: &promql_parser::parser::Expr,
    max: u64,
) -> Result<Value, EvalError> {
    let budget = SampleBudget::limit(max);
    Evaluator::new(store, t_ms)
        .with_budget(budget.as_ref())
        .eval(expr)
}

async fn query(state: AppState, p: InstantParams) -> Response {
    let q = match query_text(&p.query) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let t_ms = match p.time.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or_else(|| state.handles.clock.now_ms()),
        Err(e) => return bad_data(format!("invalid parameter \"time\": {e}")).into_response(),
    };
    let expr = q.expr;
    let max = state.limits.max_query_samples;
    let read = ReadStore(Box::new(
        move |store: &crate::store::window::WindowStore| {
            evaluate(store, t_ms, &expr, max).map_err(|e| e.0)
        },
    ));
    let value = match run(&state, read).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let data = match value {
        Value::Scalar(v) => QueryData::Scalar(SamplePair::new(t_ms, v)),
        Value::String(s) => QueryData::String(SamplePair(t_ms as f64 / 1000.0, s)),
        Value::Vector(v) => QueryData::Vector(
            v.iter()
                .map(|s| InstantSample {
                    metric: metric(&s.labels),
                    value: SamplePair::new(t_ms, s.value),
                })
                .collect(),
        ),
        Value::Matrix(m) => QueryData::Matrix(
            m.iter()
                .map(|s| range_series(&s.labels, &s.points))
                .collect(),
        ),
    };
    Json(PromSuccess::new(data)).into_response()
}

fn range_series(labels: &Labels, points: &[(i64, f64)]) -> RangeSeries {
    RangeSeries {
        metric: metric(labels),
        values: points
            .iter()
            .map(|(t, v)| SamplePair::new(*t, *v))
            .collect(),
    }
}

async fn query_range(state: AppState, p: RangeParams) -> Response {
    let q = match query_text(&p.query) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let field = |name: &str, v: &Option<String>| -> Result<String, PromError> {
        v.clone()
            .ok_or_else(|| bad_data(format!("invalid parameter \"{name}\": missing")))
    };
    let parsed = (|| -> Result<(i64, i64, i64), PromError> {
        let start = parse_time(&field("start", &p.start)?)
            .map_err(|e| bad_data(format!("invalid parameter \"start\": {e}")))?;
        let end = parse_time(&field("end", &p.end)?)
            .map_err(|e| bad_data(format!("invalid parameter \"end\": {e}")))?;
        let step = parse_step(&field("step", &p.step)?)
            .map_err(|e| bad_data(format!("invalid parameter \"step\": {e}")))?;
        if end < start {
            return Err(bad_data(
                "invalid parameter \"end\": end timestamp must not be before start time",
            ));
        }
        if (end - start) / step >= MAX_POINTS_PER_SERIES {
            return Err(bad_data("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"));
        }
        Ok((start, end, step))
    })();
    let (start, end, step) = match parsed {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    if matches!(
        q.expr,
        promql_parser::parser::Expr::MatrixSelector(_)
            | promql_parser::parser::Expr::StringLiteral(_)
    ) {
        return bad_data(
            "invalid expression type for range query, must be Scalar or instant Vector",
        )
        .into_response();
    }
    let times: Vec<i64> = (0..)
        .map(|k| start + k * step)
        .take_while(|t| *t <= end)
        .collect();
    let mut series: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for chunk in times.chunks(STEPS_PER_READ) {
        let (expr, chunk) = (q.expr.clone(), chunk.to_vec());
        let max = state.limits.max_query_samples;
        let read = ReadStore(Box::new(
            move |store: &crate::store::window::WindowStore| {
                chunk
                    .iter()
                    .map(|t| evaluate(store, *t, &expr, max).map(|v| (*t, v)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.0)
            },
        ));
        let values = match run(&state, read).await {
            Ok(v) => v,
            Err(e) => return e.into_response(),
        };
        for (t, v) in values {
            match v {
                Value::Scalar(x) => series.entry(Labels::new()).or_default().push((t, x)),
                Value::Vector(v) => {
                    for s in v {
                        series.entry(s.labels).or_default().push((t, s.value));
                    }
                }
                _ => {
                    return bad_data(
                        "invalid expression type for range query, must be Scalar or instant Vector",
                    )
                    .into_response()
                }
            }
        }
    }
    let result = series
        .iter()
        .map(|(labels, points)| range_series(labels, points))
        .collect();
    Json(PromSuccess::new(QueryData::Matrix(result))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_steps_as_prometheus_reads_them() {
        assert_eq!(parse_time("1700000000.5"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T23:13:20.25+01:00"),
            Ok(1_700_000_000_250)
        );
        assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
        assert_eq!(parse_step("15s"), Ok(15_000));
        assert_eq!(parse_step("0.5"), Ok(500));
        assert!(parse_step("0").is_err());
        assert_eq!(value_text(1e21), "1000000000000000000000");
        assert_eq!(value_text(f64::INFINITY), "+Inf");
    }
}
