//! The gRPC face of the conversations use-cases.
pub mod calendars;
pub mod call;
pub mod command;
pub mod convert;
pub mod email;
pub mod error;
pub mod events;
pub mod handler;
pub mod managed;
pub mod metrics;
pub mod promises;
pub mod sla_policies;
