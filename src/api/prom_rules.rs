//! Prometheus' rules and alerts API, in its shapes, for Prometheus tooling and Grafana's
//! Prometheus data source: `GET /api/v1/rules` (with `type=alert|record`) and
//! `GET /api/v1/alerts`. Pulse's own view of the rules is `GET /api/phase4/rules`.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};

use super::prom::{bad_data, PromError, PromErrorBody, PromSuccess};
use super::AppState;
use crate::alertmanager::payload::rfc3339;
use crate::rules::alerting::{Alert, AlertState};
use crate::rules::engine::{GetRules, GroupInfo, RuleInfo};

/// What Prometheus shows for a time never reached (Go's zero time).
const NEVER: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RulesParams {
    /// `alert` or `record`: only rules of that type (and groups that have one).
    #[serde(rename = "type")]
    #[param(pattern = "^(alert|record)?$")]
    kind: Option<String>,
}

async fn groups(state: &AppState) -> Result<Vec<GroupInfo>, Response> {
    state.handles.rules.send(GetRules).await.map_err(|e| {
        let message = format!("the rule engine did not answer: {e}");
        PromError(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).into_response()
    })
}

/// A sample value as Prometheus writes it in these APIs (Go's `FormatFloat(v, 'e', -1, 64)`:
/// `1e+00`, `6.25e-01`).
fn go_exponent(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let text = format!("{v:e}");
    let (mantissa, exponent) = text.split_once('e').expect("{:e} writes an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

/// Milliseconds written as Prometheus writes a duration in seconds: `60`, `0.5`.
#[derive(Debug, Clone, Copy)]
pub struct Seconds(i64);

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            s.serialize_i64(self.0 / 1000)
        } else {
            s.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

impl utoipa::PartialSchema for Seconds {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .description(Some("seconds"))
            .into()
    }
}

impl ToSchema for Seconds {}

/// An alert as Prometheus shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromAlert {
    /// Its labels, `alertname` included.
    labels: BTreeMap<String, String>,
    /// Its annotations, templates expanded.
    annotations: BTreeMap<String, String>,
    state: AlertState,
    /// When its expression started to hold, RFC 3339.
    active_at: String,
    /// The expression's value, as Go writes a float (`6.25e-01`).
    value: String,
}

impl From<&Alert> for PromAlert {
    fn from(a: &Alert) -> Self {
        PromAlert {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            state: a.state,
            active_at: rfc3339(a.active_at_ms),
            value: go_exponent(a.value),
        }
    }
}

/// A rule as Prometheus shows it; the fields from `state` on are an alerting rule's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromRule {
    /// The alert's or the recorded series' name.
    name: String,
    /// The expression.
    query: String,
    /// Labels as written.
    labels: BTreeMap<String, String>,
    /// `ok`, `err`, or `unknown` before the group's first evaluation.
    #[schema(value_type = String)]
    health: &'static str,
    /// The last evaluation's error (absent while there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    last_error: Option<String>,
    /// The group's last evaluation, RFC 3339 (`0001-01-01T00:00:00Z` before the first).
    last_evaluation: String,
    /// Seconds the rule took (not timed rule by rule: 0).
    evaluation_time: f64,
    /// `alerting` or `recording`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    /// The most urgent state of its alerts (`inactive` when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    state: Option<AlertState>,
    /// Its `for`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    duration: Option<Seconds>,
    /// Its `keep_firing_for`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    keep_firing_for: Option<Seconds>,
    /// Annotations as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    annotations: Option<BTreeMap<String, String>>,
    /// Its pending and firing alerts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    alerts: Option<Vec<PromAlert>>,
}

fn health(rule: &RuleInfo, evaluated: bool) -> &'static str {
    match (&rule.last_error, evaluated) {
        (Some(_), _) => "err",
        (None, true) => "ok",
        (None, false) => "unknown",
    }
}

fn rule(rule: &RuleInfo, last_evaluation: &str, evaluated: bool) -> PromRule {
    let alerting = rule.kind == "alert";
    let state = rule
        .alerts
        .iter()
        .map(|a| a.state)
        .max_by_key(|s| match s {
            AlertState::Firing => 2,
            AlertState::Pending => 1,
            AlertState::Inactive => 0,
        })
        .unwrap_or(AlertState::Inactive);
    PromRule {
        name: rule.name.clone(),
        query: rule.expr.clone(),
        labels: rule.labels.clone(),
        health: health(rule, evaluated),
        last_error: rule.last_error.clone(),
        last_evaluation: last_evaluation.to_string(),
        evaluation_time: 0.0,
        kind: if alerting { "alerting" } else { "recording" },
        state: alerting.then_some(state),
        duration: alerting.then_some(Seconds(rule.for_ms)),
        keep_firing_for: alerting.then_some(Seconds(rule.keep_firing_for_ms)),
        annotations: alerting.then(|| rule.annotations.clone()),
        alerts: alerting.then(|| rule.alerts.iter().map(PromAlert::from).collect()),
    }
}

/// A rule group as Prometheus shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromRuleGroup {
    /// The group's name.
    name: String,
    /// The rule file.
    file: String,
    rules: Vec<PromRule>,
    /// How often it is evaluated.
    interval: Seconds,
    /// Its `limit` (Pulse has none: 0).
    limit: u32,
    /// Seconds its last evaluation took (not timed: 0).
    evaluation_time: f64,
    /// Its last evaluation, RFC 3339 (`0001-01-01T00:00:00Z` before the first).
    last_evaluation: String,
}

/// `data` of `GET /api/v1/rules`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleDiscovery {
    groups: Vec<PromRuleGroup>,
}

/// `data` of `GET /api/v1/alerts`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertDiscovery {
    alerts: Vec<PromAlert>,
}

/// `GET /api/v1/rules`: every group and rule, with the alerts of alerting rules, as
/// Prometheus 2.42 answers.
#[utoipa::path(get, path = "/api/v1/rules", operation_id = "prometheus_rules", tag = "prometheus",
    summary = "rule groups, rules and their alerts, as Prometheus answers",
    params(RulesParams),
    responses(
        (status = 200, description = "Prometheus' rules envelope", body = PromSuccess<RuleDiscovery>),
        (status = 400, description = "an unknown `type`", body = PromErrorBody),
        (status = 503, description = "the rule engine did not answer", body = PromErrorBody),
    ))]
pub async fn rules(
    State(state): State<AppState>,
    params: Result<Query<RulesParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(p)) => p,
        Err(e) => return bad_data(e.body_text()).into_response(),
    };
    let wanted = match params.kind.as_deref() {
        None | Some("") => None,
        Some("alert") => Some("alert"),
        Some("record") => Some("record"),
        Some(other) => {
            let message = format!("unsupported type {other:?}: use \"alert\" or \"record\"");
            return bad_data(message).into_response();
        }
    };
    let groups = match groups(&state).await {
        Ok(g) => g,
        Err(e) => return e,
    };
    let groups: Vec<PromRuleGroup> = groups
        .iter()
        .filter_map(|g| {
            let last = g.last_eval_ms.map_or(NEVER.to_string(), rfc3339);
            let rules: Vec<PromRule> = g
                .rules
                .iter()
                .filter(|r| wanted.is_none_or(|w| r.kind == w))
                .map(|r| rule(r, &last, g.last_eval_ms.is_some()))
                .collect();
            // Prometheus leaves out a group none of whose rules is of the type asked for.
            (wanted.is_none() || !rules.is_empty()).then(|| PromRuleGroup {
                name: g.name.clone(),
                file: g.file.clone(),
                rules,
                interval: Seconds(g.interval_ms),
                limit: 0,
                evaluation_time: 0.0,
                last_evaluation: last,
            })
        })
        .collect();
    Json(PromSuccess::new(RuleDiscovery { groups })).into_response()
}

/// `GET /api/v1/alerts`: every pending and firing alert, as Prometheus answers.
#[utoipa::path(get, path = "/api/v1/alerts", operation_id = "prometheus_alerts", tag = "prometheus",
    summary = "pending and firing alerts, as Prometheus answers",
    responses(
        (status = 200, description = "Prometheus' alerts envelope", body = PromSuccess<AlertDiscovery>),
        (status = 503, description = "the rule engine did not answer", body = PromErrorBody),
    ))]
pub async fn alerts(State(state): State<AppState>) -> Response {
    let groups = match groups(&state).await {
        Ok(g) => g,
        Err(e) => return e,
    };
    let alerts = groups
        .iter()
        .flat_map(|g| &g.rules)
        .flat_map(|r| &r.alerts)
        .map(PromAlert::from)
        .collect();
    Json(PromSuccess::new(AlertDiscovery { alerts })).into_response()
}

#[cfg(test)]
mod tests {
    use super::go_exponent;

    #[test]
    fn values_are_written_as_go_writes_them() {
        assert_eq!(go_exponent(1.0), "1e+00");
        assert_eq!(go_exponent(0.625), "6.25e-01");
        assert_eq!(go_exponent(81559.0), "8.1559e+04");
        assert_eq!(go_exponent(-2e-300), "-2e-300");
        assert_eq!(go_exponent(f64::NAN), "NaN");
        assert_eq!(go_exponent(f64::NEG_INFINITY), "-Inf");
    }
}
