//! Acknowledgements and Alertmanager silences kept in step, for one Alertmanager. With
//! `alerting.silence_on_ack`, an acknowledgement in Pulse creates a silence matching
//! exactly that alert's labels (created by `pulse:<who>`, with the comment), removed when
//! the alert resolves. Every `alerting.silence_sync_ms` the silences are read back: one of
//! Pulse's that expired (someone expired it in Alertmanager) clears its acknowledgement, and
//! the active silences go to the rule engine, which shows the alerts they match as silenced.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::Destination;
use super::payload::rfc3339;
use crate::runtime::clock::Clock;
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats};

/// One matcher of a silence, as Alertmanager's API writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceMatcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// An active silence in Alertmanager.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveSilence {
    pub id: String,
    pub created_by: String,
    pub matchers: Vec<SilenceMatcher>,
}

impl ActiveSilence {
    /// Whether the silence matches these labels (all matchers, anchored regexes).
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| {
            let value = labels.get(&m.name).map_or("", String::as_str);
            let hit = if m.is_regex {
                regex::Regex::new(&format!("^(?:{})$", m.value)).is_ok_and(|re| re.is_match(value))
            } else {
                value == m.value
            };
            hit == m.is_equal
        })
    }
}

/// What the rule engine hears after each sync.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SilencesSeen {
    /// Which Alertmanager (its base URL).
    pub source: String,
    /// Alerts whose acknowledgement's silence was expired in Alertmanager.
    pub expired_acks: Vec<String>,
    /// Every active silence.
    pub active: Vec<ActiveSilence>,
}

/// From the rule engine.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum SilenceCommand {
    /// An alert was acknowledged: silence exactly its labels until `ends_at_ms`.
    Silence {
        alert_id: String,
        labels: std::collections::BTreeMap<String, String>,
        by: String,
        comment: String,
        ends_at_ms: i64,
    },
    /// The alert resolved: remove its silence.
    Unsilence { alert_id: String },
    /// Where sync results go.
    Subscribe(Recipient<SilencesSeen>),
}

/// Keeps one Alertmanager's silences and Pulse's acknowledgements in step.
pub struct SilenceSync {
    /// `http://host:port[/prefix]`.
    base: String,
    authorization: Option<String>,
    /// The HTTP client, kept for every call.
    agent: ureq::Agent,
    sync_every: Duration,
    /// Create silences for acknowledgements (else only read them).
    silence_on_ack: bool,
    clock: Clock,
    engine: Option<Recipient<SilencesSeen>>,
    /// Alert id → the silence Pulse created for its acknowledgement.
    ours: HashMap<String, String>,
    created: u64,
    removed: u64,
    failed: u64,
    last_error: Option<String>,
}

impl SilenceSync {
    /// For the Alertmanager `destination` posts alerts to.
    pub fn new(
        destination: &Destination,
        sync_every: Duration,
        silence_on_ack: bool,
        clock: Clock,
    ) -> Self {
        SilenceSync {
            base: destination.base().to_string(),
            authorization: destination.authorization.clone(),
            agent: destination.agent(),
            sync_every,
            silence_on_ack,
            clock,
            engine: None,
            ours: HashMap::new(),
            created: 0,
            removed: 0,
            failed: 0,
            last_error: None,
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.authorization {
            Some(a) => r.set("Authorization", a),
            None => r,
        }
    }

    /// Runs a blocking call off the actor's thread and hands the result back.
    fn call<T: Send + 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
        done: impl FnOnce(&mut Self, T) + 'static,
    ) {
        let task = tokio::task::spawn_blocking(work);
        ctx.spawn(task.into_actor(self).map(move |r, act, _| {
            match r.unwrap_or_else(|e| Err(e.to_string())) {
                Ok(v) => {
                    act.last_error = None;
                    done(act, v);
                }
                Err(e) => {
                    act.failed += 1;
                    act.last_error = Some(e);
                }
            }
        }));
    }

    fn sync(&mut self, ctx: &mut Context<Self>) {
        let request = self.request("GET", "/api/v2/silences");
        self.call(
            ctx,
            move || {
                request
                    .call()
                    .map_err(|e| e.to_string())?
                    .into_json::<Vec<serde_json::Value>>()
                    .map_err(|e| e.to_string())
            },
            |act, silences| act.seen(silences),
        );
    }

    fn seen(&mut self, silences: Vec<serde_json::Value>) {
        self.adopt(&silences);
        let state_of = |id: &str| {
            silences
                .iter()
                .find(|s| s["id"] == id)
                .and_then(|s| s["status"]["state"].as_str().map(str::to_string))
        };
        let expired: Vec<String> = self
            .ours
            .iter()
            .filter(|(_, sid)| state_of(sid).is_none_or(|s| s == "expired"))
            .map(|(alert, _)| alert.clone())
            .collect();
        for alert in &expired {
            self.ours.remove(alert);
        }
        let active = silences
            .iter()
            .filter(|s| s["status"]["state"] == "active")
            .filter_map(|s| {
                Some(ActiveSilence {
                    id: s["id"].as_str()?.to_string(),
                    created_by: s["createdBy"].as_str().unwrap_or_default().to_string(),
                    matchers: serde_json::from_value(s["matchers"].clone()).ok()?,
                })
            })
            .collect();
        if let Some(engine) = &self.engine {
            engine.do_send(SilencesSeen {
                source: self.base.clone(),
                expired_acks: expired,
                active,
            });
        }
    }
}

impl SilenceSync {
    /// Takes back the active silences Pulse made before a restart: one created by
    /// `pulse:<who>` whose matchers are exactly an alert's labels is that alert's (its id is
    /// the labels' fingerprint), so it goes when the alert resolves, as if made by this
    /// process.
    fn adopt(&mut self, silences: &[serde_json::Value]) {
        for s in silences {
            let ours = s["status"]["state"] == "active"
                && s["createdBy"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("pulse:"));
            let (Some(id), Ok(matchers)) = (
                s["id"].as_str(),
                serde_json::from_value::<Vec<SilenceMatcher>>(s["matchers"].clone()),
            ) else {
                continue;
            };
            if !ours || matchers.iter().any(|m| m.is_regex || !m.is_equal) {
                continue;
            }
            let labels: std::collections::BTreeMap<&str, &str> = matchers
                .iter()
                .map(|m| (m.name.as_str(), m.value.as_str()))
                .collect();
            let alert_id = crate::model::labels::fingerprint(labels);
            if !self.ours.values().any(|held| held == id) {
                self.ours.entry(alert_id).or_insert_with(|| id.to_string());
            }
        }
    }
}

impl Actor for SilenceSync {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // At once, so that silences made before a restart are taken back before an
        // acknowledgement could make a second one.
        self.sync(ctx);
        ctx.run_interval(self.sync_every, |act, ctx| act.sync(ctx));
    }
}

impl Handler<SilenceCommand> for SilenceSync {
    type Result = ();

    fn handle(&mut self, cmd: SilenceCommand, ctx: &mut Self::Context) {
        match cmd {
            SilenceCommand::Subscribe(engine) => self.engine = Some(engine),
            SilenceCommand::Silence {
                alert_id,
                labels,
                by,
                comment,
                ends_at_ms,
            } => {
                if !self.silence_on_ack || self.ours.contains_key(&alert_id) {
                    return;
                }
                let matchers: Vec<SilenceMatcher> = labels
                    .into_iter()
                    .map(|(name, value)| SilenceMatcher {
                        name,
                        value,
                        is_regex: false,
                        is_equal: true,
                    })
                    .collect();
                let body = json!({
                    "matchers": matchers,
                    "startsAt": rfc3339(self.clock.now_ms()),
                    "endsAt": rfc3339(ends_at_ms),
                    "createdBy": format!("pulse:{by}"),
                    "comment": if comment.is_empty() { "acknowledged in Pulse".to_string() } else { comment },
                });
                let request = self.request("POST", "/api/v2/silences");
                self.call(
                    ctx,
                    move || {
                        let answer: serde_json::Value = request
                            .send_json(body)
                            .map_err(|e| e.to_string())?
                            .into_json()
                            .map_err(|e| e.to_string())?;
                        answer["silenceID"]
                            .as_str()
                            .map(str::to_string)
                            .ok_or_else(|| format!("no silenceID in {answer}"))
                    },
                    move |act, id| {
                        act.created += 1;
                        act.ours.insert(alert_id, id);
                    },
                );
            }
            SilenceCommand::Unsilence { alert_id } => {
                let Some(id) = self.ours.remove(&alert_id) else {
                    return;
                };
                let request = self.request("DELETE", &format!("/api/v2/silence/{id}"));
                self.call(
                    ctx,
                    move || request.call().map(drop).map_err(|e| e.to_string()),
                    |act, ()| act.removed += 1,
                );
            }
        }
    }
}

impl Handler<GetStats> for SilenceSync {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut st = ComponentStats::new(format!("silences {}", self.base), "sink");
        st.emitted_total = self.created;
        st.set(figure::SILENCES_REMOVED_TOTAL, self.removed as f64);
        st.set(figure::SILENCES_HELD, self.ours.len() as f64);
        st.set(figure::SILENCE_CALLS_FAILED_TOTAL, self.failed as f64);
        if let Some(e) = &self.last_error {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!("Alertmanager's silences API failed: {e}"));
        }
        MessageResult(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_match_labels_as_alertmanager_does() {
        let labels = [("alertname", "GpuHot"), ("gpu", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let m = |name: &str, value: &str, is_regex: bool, is_equal: bool| SilenceMatcher {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal,
        };
        let silence = |matchers| ActiveSilence {
            id: "s".into(),
            created_by: "x".into(),
            matchers,
        };
        assert!(silence(vec![m("alertname", "GpuHot", false, true)]).matches(&labels));
        assert!(silence(vec![m("gpu", "[0-3]", true, true)]).matches(&labels));
        assert!(!silence(vec![m("gpu", "3", false, false)]).matches(&labels));
        assert!(!silence(vec![m("gpu", "1|2", true, true)]).matches(&labels));
        assert!(silence(vec![m("team", "", false, true)]).matches(&labels));
    }
}
