//! Prometheus' rules and alerts API, in its shapes, for Prometheus tooling and Grafana's
//! Prometheus data source: `GET /api/v1/rules` (with `type=alert|record`) and
//! `GET /api/v1/alerts`. Pulse's own view of the rules is `GET /api/phase4/rules`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::prom::{bad_data, PromError};
use super::AppState;
use crate::alertmanager::payload::rfc3339;
use crate::rules::alerting::{Alert, AlertState};
use crate::rules::engine::{GetRules, GroupInfo, RuleInfo};

/// What Prometheus shows for a time never reached (Go's zero time).
const NEVER: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Deserialize, Default)]
pub struct RulesParams {
    #[serde(rename = "type")]
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

/// Milliseconds as Prometheus writes a duration in seconds: `60`, `0.5`.
fn seconds(ms: i64) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn alert(a: &Alert) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339(a.active_at_ms),
        "value": go_exponent(a.value),
    })
}

fn health(rule: &RuleInfo, evaluated: bool) -> &'static str {
    match (&rule.last_error, evaluated) {
        (Some(_), _) => "err",
        (None, true) => "ok",
        (None, false) => "unknown",
    }
}

fn rule(rule: &RuleInfo, last_evaluation: &str, evaluated: bool) -> Value {
    let common = json!({
        "name": rule.name,
        "query": rule.expr,
        "labels": rule.labels,
        "health": health(rule, evaluated),
        "lastEvaluation": last_evaluation,
        "evaluationTime": 0.0,
    });
    let Value::Object(mut out) = common else {
        unreachable!("an object")
    };
    // Prometheus leaves `lastError` out while there is none.
    if let Some(e) = &rule.last_error {
        out.insert("lastError".into(), json!(e));
    }
    if rule.kind == "alert" {
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
        out.insert("type".into(), json!("alerting"));
        out.insert("state".into(), json!(state.as_str()));
        out.insert("duration".into(), seconds(rule.for_ms));
        out.insert("keepFiringFor".into(), seconds(rule.keep_firing_for_ms));
        out.insert("annotations".into(), json!(rule.annotations));
        out.insert(
            "alerts".into(),
            Value::Array(rule.alerts.iter().map(alert).collect()),
        );
    } else {
        out.insert("type".into(), json!("recording"));
    }
    Value::Object(out)
}

/// `GET /api/v1/rules`: every group and rule, with the alerts of alerting rules, as
/// Prometheus 2.42 answers.
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
    let groups: Vec<Value> = groups
        .iter()
        .filter_map(|g| {
            let last = g.last_eval_ms.map_or(NEVER.to_string(), rfc3339);
            let rules: Vec<Value> = g
                .rules
                .iter()
                .filter(|r| wanted.is_none_or(|w| r.kind == w))
                .map(|r| rule(r, &last, g.last_eval_ms.is_some()))
                .collect();
            // Prometheus leaves out a group none of whose rules is of the type asked for.
            (wanted.is_none() || !rules.is_empty()).then(|| {
                json!({
                    "name": g.name,
                    "file": g.file,
                    "rules": rules,
                    "interval": seconds(g.interval_ms),
                    "limit": 0,
                    "evaluationTime": 0.0,
                    "lastEvaluation": last,
                })
            })
        })
        .collect();
    Json(json!({"status": "success", "data": {"groups": groups}})).into_response()
}

/// `GET /api/v1/alerts`: every pending and firing alert, as Prometheus answers.
pub async fn alerts(State(state): State<AppState>) -> Response {
    let groups = match groups(&state).await {
        Ok(g) => g,
        Err(e) => return e,
    };
    let alerts: Vec<Value> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .flat_map(|r| &r.alerts)
        .map(alert)
        .collect();
    Json(json!({"status": "success", "data": {"alerts": alerts}})).into_response()
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
