//! The window store: the per-series rings ([`window`]) and the [`actor`] that owns them,
//! stores every batch, forwards it to the sinks and processors, and answers reads.

pub mod actor;
pub mod messages;
pub mod window;
