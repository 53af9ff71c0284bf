//! The processors the window store hands every stored batch to, or that read its windows:
//! the [`anomaly`] detector and the [`predict`]or. Each folder holds its actor and its logic.

pub mod anomaly;
pub mod predict;
