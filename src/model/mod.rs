//! The sample model.

pub mod catalog;
pub mod selector;
pub mod series;
