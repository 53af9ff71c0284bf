//! What every part of Pulse runs on: where "now" comes from ([`clock`]), mailboxes with a
//! backlog gauge ([`mailbox`]), handing freed memory back ([`allocator`]), what this host is
//! called ([`host`]), how it stops ([`shutdown`]), and what each actor reports of itself
//! ([`stats`]: `GetStats`, typed figures).

pub mod allocator;
pub mod clock;
pub mod host;
pub mod mailbox;
pub mod shutdown;
pub mod stats;
