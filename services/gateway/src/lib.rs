//! rapport-gateway: the one public door of Rapport. It authenticates callers
//! (API keys, JWT), resolves their tenant and scopes, enforces the scope each
//! RPC declares in its contract, rate-limits and sheds load, writes the audit
//! log, and routes gRPC, gRPC-web and REST/JSON calls to the services, which
//! trust only the tenant assertion it signs.
#![forbid(unsafe_code)]

pub mod auth;
pub mod call;
pub mod catalog;
pub mod rest;
