//! The sample model.

pub mod catalog;
pub mod gpu_id;
pub mod labels;
pub mod selector;
pub mod series;
