//! The conversations service's integration tests, one binary. `harness`
//! starts the real service and the real profiles service it resolves
//! senders with (its `Config` is built in `harness::conversations_config`
//! only); the modules below use it.
mod harness;
mod smtp;

mod calendars;
mod directory;
mod erasure;
mod inbound_email;
mod inboxes;
mod messages;
mod outbound_email;
mod receive;
mod sla;
mod sla_policies;
mod trace;
mod transitions;
