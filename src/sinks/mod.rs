//! Where stored samples (and alert, anomaly and prediction events) leave Pulse: a JSON-lines
//! file ([`jsonl`]), Kafka topics ([`kafka`]), Redis keys ([`redis`]); alerts to Alertmanager
//! and webhooks ([`alertmanager`]). One actor per file.

pub mod alertmanager;
pub mod jsonl;
pub mod kafka;
pub mod redis;
