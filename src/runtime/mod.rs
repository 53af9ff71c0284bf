//! What every part of Pulse runs on: where "now" comes from ([`clock`]), mailboxes with a
//! backlog gauge ([`mailbox`]), handing freed memory back ([`allocator`]), what this host is
//! called ([`host`]), and test helpers.

pub mod allocator;
pub mod clock;
pub mod host;
pub mod mailbox;
pub mod shutdown;
#[cfg(test)]
pub mod testing;
