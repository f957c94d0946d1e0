//! Every outbound call of the service: delivery attempts and the check of
//! where a URL leads, through the shared signed-call client
//! (`rapport_kit::webhook`: hyper, rustls, SSRF checks).
use std::time::Duration;

use rapport_kit::webhook::Client;

use crate::domain::{
    ports::{AddressGuard, Answer, Attempt, Sender},
    values::WebhookUrl,
};

/// The `User-Agent` of every delivery.
const USER_AGENT: &str = concat!("Rapport-Webhooks/", env!("CARGO_PKG_VERSION"));

/// The HTTP client of deliveries.
#[derive(Debug, Clone)]
pub struct Outbound(Client);

impl Outbound {
    /// A client refusing private addresses unless `allow_private`, giving
    /// each attempt (resolving, connecting, TLS, the answer's head) at most
    /// `timeout`.
    pub fn new(allow_private: bool, timeout: Duration) -> Self {
        Self(Client::new(USER_AGENT, allow_private, timeout))
    }
}

impl Sender for Outbound {
    async fn send(&self, attempt: &Attempt) -> Answer {
        self.0.send(attempt).await
    }
}

impl AddressGuard for Outbound {
    async fn check(&self, url: &WebhookUrl) -> Result<(), String> {
        self.0.check(url).await
    }
}
