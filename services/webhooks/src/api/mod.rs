//! gRPC transport of the webhooks service: conversions between protobuf
//! and domain types, the rendering of events as delivered (proto3 JSON),
//! the error mapping, and the tonic handler.

pub mod command;
pub mod convert;
pub mod error;
pub mod events;
pub mod handler;
