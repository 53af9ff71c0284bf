//! What several components share: sample batches, commands, pages of lists. A
//! message that one actor receives lives with that actor (`store::messages`,
//! `processors::anomaly::messages`, ...).

pub mod commands;
pub mod figures;
pub mod page;
pub mod samples;
/// A recording actor that stands in for any downstream of sample batches (tests only).
#[cfg(test)]
pub mod testing;
