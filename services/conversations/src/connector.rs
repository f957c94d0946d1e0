//! Channel connectors: the outbound messages of an inbox of a channel other
//! than email are handed to the connector it names as signed HTTP POSTs —
//! the client and the signing of the webhooks service
//! (`rapport_kit::webhook`: Standard Webhooks signatures, SSRF checks,
//! rustls). `webhook-id` is the message id, the same on every retry, so
//! that the connector recognizes a copy.
use std::time::Duration;

use chrono::{DateTime, Utc};
use rapport_kit::webhook::{Answer, Attempt, Client, WebhookUrl};
use serde::{Deserialize, Serialize};

use crate::{domain::delivery::Outcome, storage::delivery::Outgoing};

/// The `User-Agent` of every hand-over.
const USER_AGENT: &str = concat!("Rapport-Conversations/", env!("CARGO_PKG_VERSION"));

/// The `type` of the JSON a connector receives.
pub const PAYLOAD_TYPE: &str = "rapport.conversations.v1.OutboundMessage";

/// Where connectors may be reached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorConfig {
    /// Hand over to plain-http URLs (development:
    /// `RAPPORT_CONVERSATIONS__CONNECTORS__ALLOW_HTTP=true`). Off by
    /// default: only https.
    pub allow_http: bool,
    /// Hand over to loopback, private, link-local and shared addresses
    /// (development: a connector on the same machine). Off by default.
    /// Cloud metadata, multicast and unspecified addresses are refused
    /// even then.
    pub allow_private_addresses: bool,
    /// Most time one hand-over may take: resolving, connecting, TLS, the
    /// answer's status line. Milliseconds.
    pub timeout_ms: u64,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private_addresses: false,
            timeout_ms: 10_000,
        }
    }
}

/// Hands messages to connectors.
#[derive(Debug, Clone)]
pub struct Connectors {
    client: Client,
    allow_http: bool,
}

impl Connectors {
    /// The connectors client of `config`.
    pub fn new(config: &ConnectorConfig) -> Self {
        Self {
            client: Client::new(
                USER_AGENT,
                config.allow_private_addresses,
                Duration::from_millis(config.timeout_ms.max(1)),
            ),
            allow_http: config.allow_http,
        }
    }

    /// Hands `out` to its inbox's connector, for `to`, at `now`.
    pub async fn send(&self, out: &Outgoing, to: &str, now: DateTime<Utc>) -> Outcome {
        let channel = out.message.channel.as_str();
        let Some(connector) = out.inbox.delivery_connector.as_ref() else {
            // It waits for one to be set.
            return Outcome::Retry(format!("the {channel} inbox has no delivery connector"));
        };
        let Some(secret) = connector.secret.as_ref() else {
            return Outcome::Retry("the connector has no signing secret".into());
        };
        let url = match WebhookUrl::parse(&connector.url, self.allow_http) {
            Ok(url) => url,
            Err(why) => return Outcome::Retry(format!("the connector URL {why}")),
        };
        let body = payload(out, to).to_string();
        let id = out.message.id.to_string();
        let attempt = Attempt {
            url,
            headers: secret.headers(&id, now.timestamp(), &body),
            body,
        };
        match self.client.send(&attempt).await {
            Answer::Status(s) if (200..300).contains(&s) => Outcome::Sent(None),
            Answer::Status(s) if s == 408 || s == 429 || s >= 500 => {
                Outcome::Retry(format!("the connector answered {s}"))
            }
            Answer::Status(s) => Outcome::Failed(format!("the connector answered {s}")),
            Answer::NoAnswer(why) => Outcome::Retry(why),
        }
    }
}

/// The JSON a connector receives: ids, the conversation and its case
/// number, the channel, from and to, the text and attachment references.
fn payload(out: &Outgoing, to: &str) -> serde_json::Value {
    let m = &out.message;
    serde_json::json!({
        "type": PAYLOAD_TYPE,
        "message": format!("conversations/{}/messages/{}", m.conversation, m.id),
        "conversation": format!("conversations/{}", m.conversation),
        "case_number": out.conversation.case_number,
        "inbox": format!("inboxes/{}", out.inbox.id),
        "channel": m.channel.as_str(),
        "provider": out.inbox.provider,
        "from": out.inbox.address,
        "to": to,
        "subject": m.subject,
        "text": m.text,
        "in_reply_to": m.in_reply_to,
        "attachments": m.attachments.iter().map(|a| serde_json::json!({
            "file_name": a.file_name,
            "content_type": a.content_type,
            "size_bytes": a.size_bytes,
            "uri": a.uri,
        })).collect::<Vec<_>>(),
        "send_time": m.send_time.to_rfc3339(),
    })
}
