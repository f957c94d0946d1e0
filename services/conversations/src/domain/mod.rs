//! The conversations domain: inboxes, conversations and their messages, the
//! one transition function every change of a conversation's state goes
//! through, threading of inbound messages, and the use-cases. No tonic,
//! prost or sea_orm here: transport, storage and the call to profiles adapt
//! to these types.

pub mod calendar;
pub mod calendars;
pub mod check_in;
pub mod deletion;
pub mod delivery;
pub mod directory;
pub mod error;
pub mod managed;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod promise;
pub mod repository;
pub mod rules;
pub mod service;
pub mod sla;
pub mod sla_apply;
pub mod sla_clock;
pub mod sla_policies;
pub mod template;

pub use error::{Error, Violations};
pub use model::*;
pub use rapport_usecase::Clock;
