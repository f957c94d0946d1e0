//! The webhooks domain: what a subscription and a delivery are, the rules
//! that decide who receives an event, when to try again and when to give
//! up, which addresses are never called, and the use-cases. No tonic, prost
//! or sea_orm here: transport, storage and the HTTP client adapt to these
//! types.

pub mod dispatch;
pub mod error;
pub mod model;
pub mod ports;
pub mod repository;
pub mod rules;
pub mod service;
pub mod values;

pub use error::{Error, Violations};
pub use model::*;
pub use rapport_usecase::Clock;
