//! The conversations service's integration tests, one binary. `harness`
//! starts the real service and the real profiles service it resolves
//! senders with (its `Config` is built in `harness::conversations_config`
//! only); the modules below use it.
mod harness;
// The SMTP relay the service submits to, shared with the `rapport dev` test.
use rapport_testkit::smtp;

mod calendars;
mod check_ins;
mod connectors;
mod consent;
mod delivery;
mod directory;
mod erasure;
mod inbound_email;
mod inboxes;
mod merges;
mod messages;
mod metrics;
mod outbound_email;
mod promises;
mod receive;
mod seed;
mod sla;
mod sla_policies;
mod trace;
mod transitions;
