//! The sample model.

pub mod catalog;
pub mod labels;
pub mod selector;
pub mod series;
