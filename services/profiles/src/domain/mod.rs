//! The profiles domain: what a customer is, the rules that keep profiles
//! consistent, and the use-cases. No tonic, prost or sea_orm here: transport
//! and storage adapt to these types, not the other way round.

pub mod birthday;
pub mod contact;
pub mod error;
pub mod model;
pub mod repository;
pub mod rules;
pub mod service;
pub mod values;
pub mod zone;

pub use error::{Error, Violations};
pub use model::*;
pub use rapport_usecase::{Clock, SystemClock};
