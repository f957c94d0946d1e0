//! What the use-cases need from the outside world besides storage: the
//! HTTP client that makes delivery attempts, and the check of where a URL
//! leads. One implementation lives in `outbound` (hyper, rustls, the
//! system resolver).
use std::future::Future;

use super::values::WebhookUrl;

/// One attempt's request: a signed POST of a delivery's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Where to.
    pub url: WebhookUrl,
    /// The Standard Webhooks headers, `(name, value)`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: String,
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The endpoint answered with this HTTP status.
    Status(u16),
    /// No answer: the address was refused, the connection or TLS failed,
    /// or the attempt timed out. The text says which (it is shown to the
    /// partner: no internal detail).
    NoAnswer(String),
}

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
