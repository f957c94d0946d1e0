//! The built-in email connector: SMTP submission of outbound messages with
//! lettre to the relay in `conversations.email.smtp_url`, From the inbox's
//! own address (never a no-reply sender), with the Message-ID the message
//! was given and In-Reply-To / References from its thread, so the
//! customer's answer threads back.
use lettre::{
    AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor,
    message::{Mailbox, MultiPart, header::ContentType},
    transport::smtp::authentication::Credentials,
};
use rapport_kit::Secret;
use serde::{Deserialize, Serialize};

use crate::storage::delivery::Outgoing;

/// Email delivery settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// The SMTP relay outbound email is submitted to: `smtp://host:port`
    /// (plain, for a local sink in dev). Empty: email is not sent; public
    /// email messages wait SCHEDULED until it is set.
    pub smtp_url: String,
    /// The relay's user name, when it asks for one.
    pub smtp_username: String,
    /// The relay's password. Secret: only from the environment.
    pub smtp_password: Secret,
}

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The relay refused it for good (a 5xx, a bad address): FAILED.
    Permanent(String),
    /// Try again later (the relay is down, a 4xx).
    Transient(String),
}

/// Submits email to the configured relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailer")
    }
}

impl Mailer {
    /// The mailer of `config`; `Ok(None)` when no relay is configured.
    pub fn new(config: &EmailConfig) -> anyhow::Result<Option<Self>> {
        if config.smtp_url.is_empty() {
            return Ok(None);
        }
        let (host, port) = config
            .smtp_url
            .strip_prefix("smtp://")
            .and_then(|rest| rest.trim_end_matches('/').rsplit_once(':'))
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "conversations.email.smtp_url: must be smtp://host:port (TLS submission is not built yet)"
                )
            })?;
        // Plain SMTP: a relay on the host or in the cluster.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port);
        if !config.smtp_password.is_empty() {
            builder = builder.credentials(Credentials::new(
                config.smtp_username.clone(),
                config.smtp_password.expose().to_owned(),
            ));
        }
        Ok(Some(Self {
            transport: builder.build(),
        }))
    }

    /// Sends `out` to `to`.
    pub async fn send(&self, out: &Outgoing, to: &str) -> Result<(), SendError> {
        let email = compose(out, to).map_err(SendError::Permanent)?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }
}

/// The email of `out` to `to`.
fn compose(out: &Outgoing, to: &str) -> Result<lettre::Message, String> {
    let m = &out.message;
    let from = Mailbox::new(
        Some(out.inbox.display_name.clone()).filter(|n| !n.is_empty()),
        out.inbox
            .address
            .parse()
            .map_err(|_| "the inbox address is no email address".to_owned())?,
    );
    let to: Mailbox = to
        .parse()
        .map_err(|_| "the customer's address is no email address".to_owned())?;
    let subject = if !m.subject.is_empty() {
        m.subject.clone()
    } else if !out.conversation.subject.is_empty() {
        format!("Re: {}", out.conversation.subject)
    } else {
        format!("Case {}", out.conversation.case_number)
    };
    let mut b = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .date(m.send_time.into())
        .message_id(m.external_id.clone());
    if !m.in_reply_to.is_empty() {
        b = b.in_reply_to(m.in_reply_to.clone());
    }
    if !out.references.is_empty() {
        b = b.references(out.references.join(" "));
    }
    let built = if m.html.is_empty() {
        b.header(ContentType::TEXT_PLAIN).body(m.text.clone())
    } else {
        b.multipart(MultiPart::alternative_plain_html(
            m.text.clone(),
            m.html.clone(),
        ))
    };
    built.map_err(|e| format!("composing the email: {e}"))
}
