//! What several components share: sample batches, stats, commands, alert events. A
//! message that one actor receives lives with that actor (`store::messages`,
//! `processors::anomaly::messages`, ...).

pub mod alerts;
pub mod commands;
pub mod figures;
pub mod page;
pub mod samples;
pub mod stats;
