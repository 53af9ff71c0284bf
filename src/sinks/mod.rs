//! Where stored samples (and alert, anomaly and prediction events) leave Pulse: a JSON-lines
//! file ([`jsonl`]), Kafka topics ([`kafka`]), Redis keys ([`redis`]). One actor per file.
//! Alerts reach Alertmanager and webhooks through `crate::alertmanager`.

pub mod jsonl;
pub mod kafka;
pub mod redis;
