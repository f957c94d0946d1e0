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
    /// The SMTP relay outbound email is submitted to, in lettre's URL
    /// forms: `smtps://host[:465]` (implicit TLS),
    /// `smtp://host[:587]?tls=required` (STARTTLS, refused without it),
    /// `smtp://host:port` (plain: a local sink in development). Certificates
    /// are checked against the webpki roots. It may carry
    /// `user:password@`, but prefer `smtp_username` and `smtp_password`;
    /// its password is never printed. Empty: email is not sent; public
    /// email messages wait SCHEDULED until it is set.
    pub smtp_url: String,
    /// The relay's user name, when it asks for one (overrides the URL's).
    pub smtp_username: String,
    /// The relay's password (overrides the URL's). Secret: only from the
    /// environment (`RAPPORT_CONVERSATIONS__EMAIL__SMTP_PASSWORD`).
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
    /// Errors never quote the URL (it may hold a password).
    pub fn new(config: &EmailConfig) -> anyhow::Result<Option<Self>> {
        if config.smtp_url.is_empty() {
            return Ok(None);
        }
        let bad = |why: &str| {
            anyhow::anyhow!(
                "conversations.email.smtp_url: {why} (smtps://host[:port], smtp://host[:port]?tls=required, or smtp://host:port)"
            )
        };
        let mut url = url::Url::parse(&config.smtp_url).map_err(|_| bad("is not a URL"))?;
        if !matches!(url.scheme(), "smtp" | "smtps") || url.host_str().is_none_or(str::is_empty) {
            return Err(bad("must be smtp:// or smtps:// with a host"));
        }
        // The credentials are set apart: lettre never sees them in a URL
        // it might quote in an error.
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| bad("its user or password is not UTF-8"))
        };
        let mut username = decode(url.username())?;
        let mut password = decode(url.password().unwrap_or_default())?;
        url.set_username("")
            .map_err(|()| bad("cannot hold a user"))?;
        url.set_password(None)
            .map_err(|()| bad("cannot hold a password"))?;
        if !config.smtp_username.is_empty() {
            username = config.smtp_username.clone();
        }
        if !config.smtp_password.is_empty() {
            password = config.smtp_password.expose().to_owned();
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.as_str())
            .map_err(|e| bad(&e.to_string()))?;
        if !password.is_empty() {
            builder = builder.credentials(Credentials::new(username, password));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> EmailConfig {
        EmailConfig {
            smtp_url: url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn relays_over_tls_starttls_or_plain_are_accepted() {
        for url in [
            "smtps://smtp.example.com",
            "smtps://user:pw@smtp.example.com:465",
            "smtp://smtp.example.com:587?tls=required",
            "smtp://smtp.example.com:587?tls=opportunistic",
            "smtp://127.0.0.1:2525",
        ] {
            assert!(Mailer::new(&config(url)).unwrap().is_some(), "{url}");
        }
        assert!(Mailer::new(&config("")).unwrap().is_none());
    }

    #[test]
    fn a_bad_relay_url_is_refused_without_showing_its_password() {
        for url in [
            "http://user:hunter2@smtp.example.com",
            "smtp://user:hunter2@smtp.example.com?tls=sometimes",
            "smtps://user:hunter2@",
            "user:hunter2@smtp.example.com",
        ] {
            let e = format!("{:#}", Mailer::new(&config(url)).unwrap_err());
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("smtp_url"), "{e}");
        }
    }
}
