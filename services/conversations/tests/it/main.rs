//! The conversations service's integration tests, one binary. `harness`
//! starts the real service and the real profiles service it resolves
//! senders with (its `Config` is built in `harness::conversations_config`
//! only); the modules below use it.
mod harness;
// The SMTP relay the service submits to, shared with the `rapport dev` test.
use rapport_testkit::smtp;

mod calendars;
mod directory;
mod erasure;
mod inbound_email;
mod inboxes;
mod messages;
mod outbound_email;
mod receive;
mod seed;
mod sla_policies;
mod trace;
mod transitions;
