//! What is POSTed: Alertmanager's v2 alert list (`POST /api/v2/alerts`), and Alertmanager's
//! webhook payload (version 4) for plain webhooks.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

/// One alert as it leaves Pulse, as Prometheus' notifier builds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutgoingAlert {
    /// The alert's labels (`alertname` included) and the external labels it lacks.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    pub starts_at_ms: i64,
    /// When it resolved; while firing, when Alertmanager may consider it resolved if no
    /// update comes (four resend periods ahead).
    pub ends_at_ms: i64,
    /// Where to see it in Pulse.
    pub generator_url: String,
    /// Pulse's alert id.
    pub fingerprint: String,
}

/// RFC 3339 in UTC with milliseconds, as Alertmanager reads times.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, in_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::promql::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        ms.rem_euclid(1000)
    )
}

/// The body of `POST /api/v2/alerts`.
pub fn alertmanager_v2(alerts: &[OutgoingAlert]) -> String {
    let list: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            json!({
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at_ms),
                "endsAt": rfc3339(a.ends_at_ms),
                "generatorURL": a.generator_url,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

/// Alertmanager's webhook payloads (version 4) for `alerts`, one per alert name, as a
/// receiver grouped by `alertname` gets them; `now_ms` tells firing from resolved.
pub fn webhooks(alerts: &[OutgoingAlert], now_ms: i64, external_url: &str) -> Vec<String> {
    let mut groups: BTreeMap<&str, Vec<&OutgoingAlert>> = BTreeMap::new();
    for a in alerts {
        let name = a.labels.get("alertname").map_or("", String::as_str);
        groups.entry(name).or_default().push(a);
    }
    groups
        .into_iter()
        .map(|(name, group)| {
            let status = |a: &OutgoingAlert| {
                if a.ends_at_ms <= now_ms {
                    "resolved"
                } else {
                    "firing"
                }
            };
            let common = |pick: fn(&OutgoingAlert) -> &BTreeMap<String, String>| {
                let mut common = pick(group[0]).clone();
                for a in &group[1..] {
                    common.retain(|k, v| pick(a).get(k) == Some(v));
                }
                common
            };
            let alerts: Vec<serde_json::Value> = group
                .iter()
                .map(|a| {
                    json!({
                        "status": status(a),
                        "labels": a.labels,
                        "annotations": a.annotations,
                        "startsAt": rfc3339(a.starts_at_ms),
                        "endsAt": if status(a) == "resolved" { rfc3339(a.ends_at_ms) } else { "0001-01-01T00:00:00Z".to_string() },
                        "generatorURL": a.generator_url,
                        "fingerprint": a.fingerprint,
                    })
                })
                .collect();
            let any_firing = group.iter().any(|a| status(a) == "firing");
            json!({
                "version": "4",
                "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"),
                "truncatedAlerts": 0,
                "status": if any_firing { "firing" } else { "resolved" },
                "receiver": "pulse",
                "groupLabels": { "alertname": name },
                "commonLabels": common(|a| &a.labels),
                "commonAnnotations": common(|a| &a.annotations),
                "externalURL": external_url,
                "alerts": alerts,
            })
            .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, gpu: &str, ends_at_ms: i64) -> OutgoingAlert {
        OutgoingAlert {
            labels: [("alertname", name), ("gpu", gpu), ("severity", "page")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: [("summary".to_string(), format!("GPU {gpu} hot"))].into(),
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms,
            generator_url: "http://pulse/x".into(),
            fingerprint: format!("f{gpu}"),
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn v2_body_and_grouped_webhooks() {
        let now = 1_700_000_100_000;
        let alerts = [
            alert("GpuHot", "0", now + 240_000),
            alert("GpuHot", "1", now - 1),
            alert("GpuLost", "2", now + 1),
        ];
        let v2: serde_json::Value = serde_json::from_str(&alertmanager_v2(&alerts)).unwrap();
        assert_eq!(v2[0]["labels"]["gpu"], "0");
        assert_eq!(v2[0]["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(
            v2[1]["endsAt"],
            "2023-11-14T22:15:00.000Z"
                .replace("00.000", "59.999")
                .replace("22:15", "22:14")
        );
        let hooks = webhooks(&alerts, now, "http://pulse");
        assert_eq!(hooks.len(), 2);
        let hot: serde_json::Value = serde_json::from_str(&hooks[0]).unwrap();
        assert_eq!(hot["version"], "4");
        assert_eq!(hot["status"], "firing");
        assert_eq!(hot["groupLabels"]["alertname"], "GpuHot");
        assert_eq!(hot["commonLabels"]["severity"], "page");
        assert!(hot["commonLabels"].get("gpu").is_none());
        assert_eq!(hot["alerts"][1]["status"], "resolved");
        assert_eq!(hot["alerts"].as_array().unwrap().len(), 2);
    }
}
