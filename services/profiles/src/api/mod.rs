//! gRPC transport of the profiles service: conversions between protobuf and
//! domain types, the error mapping, and the tonic handler.

pub mod command;
pub mod convert;
pub mod error;
pub mod events;
pub mod handler;
