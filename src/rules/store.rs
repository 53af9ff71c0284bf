//! The rule engine's state in Redis, so that a restart (even `kill -9`) gives back the
//! active alerts (with their `for` timers), their acknowledgements and the history.
//!
//! Keys (`<p>` is `redis.key_prefix`):
//! - `<p>alerts:active`: hash, alert id → `{"group","file","alert":{...},"last_sent_at_ms",
//!   "valid_until_at_ms"}`, written at every transition (pending, firing) and at every send to
//!   Alertmanager or webhooks, and removed when the alert resolves or is cancelled;
//! - `<p>alerts:acks`: hash, alert id → `{"by","comment","at_ms"}`, written before the API
//!   answers the acknowledgement;
//! - `<p>alerts:history`: list of resolved alerts as the history endpoint shows them,
//!   oldest first, trimmed to `rules.history_max`.

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::alerting::Alert;
use crate::redis::{lazy_connection, timed};
use crate::rules::view::{Acknowledgement, AlertView};

/// How long an acknowledgement may wait for Redis before the caller hears it was not kept.
pub const ACK_WRITE_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// An active alert as stored: enough to put it back into its rule, and when it was last
/// sent, so that the instance that takes it over (`pulse aggregate`) or a restart sends it
/// again when its resend delay is up, not at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredAlert {
    pub group: String,
    pub file: String,
    pub alert: Alert,
    #[serde(
        rename = "last_sent_at_ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_sent_ms: Option<i64>,
    #[serde(rename = "valid_until_at_ms", default)]
    pub valid_until_ms: i64,
}

impl StoredAlert {
    pub fn new(group: &str, file: &str, alert: &Alert) -> Self {
        StoredAlert {
            group: group.to_string(),
            file: file.to_string(),
            alert: alert.clone(),
            last_sent_ms: alert.last_sent_ms,
            valid_until_ms: alert.valid_until_ms,
        }
    }

    /// The alert as its rule holds it, with when it was last sent.
    pub fn into_alert(self) -> Alert {
        let mut a = self.alert;
        a.last_sent_ms = self.last_sent_ms;
        a.valid_until_ms = self.valid_until_ms;
        a
    }
}

/// What a restart gets back.
#[derive(Debug, Default)]
pub struct Restored {
    pub active: Vec<StoredAlert>,
    pub acks: HashMap<String, Acknowledgement>,
    /// Oldest first.
    pub history: Vec<AlertView>,
    /// Entries that did not parse (skipped, counted).
    pub unreadable: usize,
}

/// A change to write.
#[derive(Debug, Clone)]
pub enum Change {
    Active(StoredAlert),
    /// Resolved or cancelled: no longer active, its acknowledgement goes with it.
    Gone(String),
    /// Still active, no longer acknowledged (its silence was expired in Alertmanager).
    Unacknowledged(String),
    /// Resolved, into the history.
    History(Box<AlertView>),
    /// Everything active and acknowledged now, written again after a failed write left the
    /// store behind. With `replace_all` (one Pulse owns every alert) it replaces what the
    /// store holds; without (`pulse aggregate`, where other instances own other hosts'
    /// alerts) it only adds, and the removals that failed are sent again as `Gone`.
    Snapshot {
        active: Vec<StoredAlert>,
        acks: Vec<(String, Acknowledgement)>,
        replace_all: bool,
    },
}

#[derive(Clone)]
pub struct AlertStore {
    conn: ConnectionManager,
    prefix: String,
    history_max: usize,
}

impl AlertStore {
    /// Prepares the connection; connects on first use.
    pub fn new(url: &str, prefix: &str, history_max: usize) -> redis::RedisResult<Self> {
        Ok(AlertStore {
            conn: lazy_connection(url)?,
            prefix: prefix.to_string(),
            history_max,
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}alerts:{name}", self.prefix)
    }

    /// Reads everything back.
    pub async fn load(&self) -> Result<Restored, String> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.hgetall(self.key("active"))
            .hgetall(self.key("acks"))
            .lrange(self.key("history"), 0, -1);
        type Raw = (
            HashMap<String, String>,
            HashMap<String, String>,
            Vec<String>,
        );
        let (active, acks, history): Raw = timed(pipe.query_async(&mut conn)).await?;
        let mut out = Restored::default();
        for (_, v) in active {
            match serde_json::from_str(&v) {
                Ok(a) => out.active.push(a),
                Err(_) => out.unreadable += 1,
            }
        }
        for (id, v) in acks {
            match serde_json::from_str(&v) {
                Ok(a) => {
                    out.acks.insert(id, a);
                }
                Err(_) => out.unreadable += 1,
            }
        }
        for v in history {
            match serde_json::from_str(&v) {
                Ok(h) => out.history.push(h),
                Err(_) => out.unreadable += 1,
            }
        }
        Ok(out)
    }

    /// Whether Redis answers (one PING).
    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        timed(redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .map(|_| ())
    }

    /// Writes the changes in one round trip, in order.
    pub async fn write(&self, changes: Vec<Change>) -> Result<(), String> {
        let mut pipe = redis::pipe();
        // All or nothing: a snapshot never leaves the hashes half rewritten.
        pipe.atomic();
        for c in &changes {
            match c {
                Change::Active(a) => {
                    let json = serde_json::to_string(a).map_err(|e| e.to_string())?;
                    pipe.hset(self.key("active"), &a.alert.id, json).ignore();
                }
                Change::Gone(id) => {
                    pipe.hdel(self.key("active"), id).ignore();
                    pipe.hdel(self.key("acks"), id).ignore();
                }
                Change::Unacknowledged(id) => {
                    pipe.hdel(self.key("acks"), id).ignore();
                }
                Change::Snapshot {
                    active,
                    acks,
                    replace_all,
                } => {
                    if *replace_all {
                        pipe.del(self.key("active")).ignore();
                        pipe.del(self.key("acks")).ignore();
                    }
                    for a in active {
                        let json = serde_json::to_string(a).map_err(|e| e.to_string())?;
                        pipe.hset(self.key("active"), &a.alert.id, json).ignore();
                    }
                    for (id, ack) in acks {
                        let json = serde_json::to_string(ack).map_err(|e| e.to_string())?;
                        pipe.hset(self.key("acks"), id, json).ignore();
                    }
                }
                Change::History(view) => {
                    let json = serde_json::to_string(view).map_err(|e| e.to_string())?;
                    pipe.rpush(self.key("history"), json).ignore();
                    pipe.ltrim(self.key("history"), -(self.history_max as isize), -1)
                        .ignore();
                }
            }
        }
        let mut conn = self.conn.clone();
        // MULTI/EXEC answers with the (empty, all ignored) result list.
        timed(pipe.query_async::<redis::Value>(&mut conn))
            .await
            .map(drop)
    }

    /// Writes one acknowledgement, within [`ACK_WRITE_BUDGET`]: the person acknowledging
    /// hears at once when Redis cannot keep it (a hung Redis held them 5 s).
    pub async fn acknowledge(&self, id: &str, ack: &Acknowledgement) -> Result<(), String> {
        let json = serde_json::to_string(ack).map_err(|e| e.to_string())?;
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.hset(self.key("acks"), id, json).ignore();
        tokio::time::timeout(ACK_WRITE_BUDGET, timed(pipe.query_async::<()>(&mut conn)))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "Redis did not answer within {} ms",
                    ACK_WRITE_BUDGET.as_millis()
                ))
            })
    }
}
