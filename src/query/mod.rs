//! The REST API's computed views: the query [`actor`], the pure [`views`] it builds, the
//! [`cache`] in front of them, and GPU [`cleanup`] reports.

pub mod actor;
pub mod cache;
pub mod cleanup;
pub mod views;
