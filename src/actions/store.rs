//! Action records in Redis, so that a restart (even `kill -9`) gives back what Pulse did and
//! the guardrails' memory of it (a target acted on just before the restart is still in its
//! cooldown after it).
//!
//! Keys (`<p>` is `redis.key_prefix`):
//! - `<p>actions:records`, a hash, record id → the record as `GET /api/phase4/actions/{id}`
//!   shows it, written when the record is made and again when it changes (a cleanup's
//!   effect, a worker's acknowledgement, a webhook's answer); ids more than
//!   `actions.max_records` below the newest are removed;
//! - `<p>actions:last`, a hash, target → when it was last acted on (or dry-run): read before
//!   each action, so that in `pulse aggregate` an instance that takes a host over keeps the
//!   cooldown its previous owner started (each host's actions are decided exactly once).

use std::collections::HashMap;

use redis::aio::ConnectionManager;

use super::messages::ActionRecord;
use crate::redis::{lazy_connection, timed};

#[derive(Clone)]
pub struct ActionStore {
    conn: ConnectionManager,
    key: String,
    last_key: String,
    max_records: u64,
}

impl ActionStore {
    /// Prepares the connection; connects on first use.
    pub fn new(url: &str, prefix: &str, max_records: usize) -> redis::RedisResult<Self> {
        Ok(ActionStore {
            conn: lazy_connection(url)?,
            key: format!("{prefix}actions:records"),
            last_key: format!("{prefix}actions:last"),
            max_records: max_records as u64,
        })
    }

    /// Every record kept, oldest first, and how many could not be read.
    pub async fn load(&self) -> Result<(Vec<ActionRecord>, usize), String> {
        let mut conn = self.conn.clone();
        let raw: HashMap<String, String> =
            timed(redis::cmd("HGETALL").arg(&self.key).query_async(&mut conn)).await?;
        let mut unreadable = 0;
        let mut records: Vec<ActionRecord> = raw
            .values()
            .filter_map(|v| {
                let r = serde_json::from_str(v).ok();
                unreadable += usize::from(r.is_none());
                r
            })
            .collect();
        records.sort_by_key(|r| r.id);
        Ok((records, unreadable))
    }

    /// When `target` was last acted on, by any instance.
    pub async fn last_acted(&self, target: &str) -> Result<Option<i64>, String> {
        let mut conn = self.conn.clone();
        timed(
            redis::cmd("HGET")
                .arg(&self.last_key)
                .arg(target)
                .query_async(&mut conn),
        )
        .await
    }

    /// Writes (or rewrites) one record, and removes the one `max_records` before it.
    pub async fn write(&self, record: &ActionRecord) -> Result<(), String> {
        let value = serde_json::to_string(record).map_err(|e| e.to_string())?;
        let mut pipe = redis::pipe();
        pipe.hset(&self.key, record.id, value).ignore();
        if let Some(old) = record.id.checked_sub(self.max_records) {
            pipe.hdel(&self.key, old).ignore();
        }
        if record.acted() {
            pipe.hset(&self.last_key, &record.target, record.at_ms)
                .ignore();
        }
        let mut conn = self.conn.clone();
        timed(pipe.query_async::<()>(&mut conn)).await
    }
}
