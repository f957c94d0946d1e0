//! What the use-cases need from the outside world besides storage: the
//! HTTP client that makes delivery attempts, and the check of where a URL
//! leads. One implementation lives in `outbound` (hyper, rustls, the
//! system resolver).
use std::future::Future;

use super::values::WebhookUrl;

pub use rapport_usecase::webhook::{Answer, Attempt};

/// Makes delivery attempts.
pub trait Sender: Send + Sync + 'static {
    /// POSTs `attempt`, to an address that passes the same check as
    /// [`AddressGuard::check`], within the configured timeout.
    fn send(&self, attempt: &Attempt) -> impl Future<Output = Answer> + Send;
}

/// Checks where a URL leads before it is stored.
pub trait AddressGuard: Send + Sync + 'static {
    /// `Err(why)` when the URL's host is, or resolves to, an address
    /// deliveries must never reach (loopback, private, link-local,
    /// metadata…), or does not resolve.
    fn check(&self, url: &WebhookUrl) -> impl Future<Output = Result<(), String>> + Send;
}
