//! ReceiveEmail → the inbound message: raw RFC 5322 bytes parsed with
//! mail-parser — sender, subject, the text and HTML parts, attachment
//! metadata (name, type, size: a reference, never the bytes), Message-ID,
//! In-Reply-To and References — the quoted earlier reply trimmed.
use mail_parser::{HeaderValue, MessageParser, MimeHeaders as _, PartType};
use rapport_proto::conversations as pb;
use rapport_usecase::Violations;

use super::command::id_in;
use crate::domain::{
    model::*,
    rules,
    service::{Inbound, SenderIdentity},
};

/// Largest raw email taken.
pub const MAX_RAW: usize = 10 * 1024 * 1024;

/// A message id as stored: in angle brackets, as the header writes it.
fn bracketed(id: &str) -> String {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    format!("<{id}>")
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![bracketed(t)],
        HeaderValue::TextList(l) => l.iter().map(|t| bracketed(t)).collect(),
        _ => Vec::new(),
    }
}

/// ReceiveEmail → the inbound message.
pub fn inbound_email(req: &pb::ReceiveEmailRequest) -> Result<Inbound, Violations> {
    let mut v = Violations::default();
    let inbox = v.take("inbox", id_in(&req.inbox, "inboxes")).map(InboxId);
    if req.raw.is_empty() || req.raw.len() > MAX_RAW {
        v.add("raw", "is required, at most 10 MiB");
        return Err(v);
    }
    let Some(email) = MessageParser::default().parse(&req.raw[..]) else {
        v.add("raw", "is not an RFC 5322 message");
        return Err(v);
    };
    let from = email.from().and_then(|a| a.first());
    let address = from
        .and_then(|a| a.address())
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty());
    if address.is_none() {
        v.add("raw", "has no From address");
    }
    let external_id = email.message_id().map(bracketed);
    match &external_id {
        None => v.add("raw", "has no Message-ID: it dedupes the message"),
        Some(id) if id.chars().count() > rules::MAX_EXTERNAL_ID => {
            v.add("raw", "has a Message-ID longer than 500 characters");
        }
        Some(_) => {}
    }
    let text = email
        .body_text(0)
        .map(|t| rules::trim_quoted(&t))
        .unwrap_or_default();
    // Only an HTML part the sender wrote (mail-parser renders one from
    // the text otherwise).
    let html = email
        .html_part(0)
        .filter(|p| matches!(p.body, PartType::Html(_)))
        .and_then(|_| email.body_html(0))
        .map(|h| h.into_owned())
        .unwrap_or_default();
    let attachments: Vec<Attachment> = email
        .attachments()
        .take(rules::MAX_ATTACHMENTS)
        .map(|a| Attachment {
            file_name: a
                .attachment_name()
                .unwrap_or("attachment")
                .chars()
                .take(255)
                .collect(),
            content_type: a
                .content_type()
                .map(|c| match c.subtype() {
                    Some(sub) => format!("{}/{}", c.ctype(), sub),
                    None => c.ctype().to_owned(),
                })
                .unwrap_or_default()
                .chars()
                .take(255)
                .collect(),
            size_bytes: i64::try_from(a.contents().len()).unwrap_or(i64::MAX),
            uri: String::new(),
        })
        .collect();
    if text.trim().is_empty() && attachments.is_empty() {
        v.add("raw", "has no text part and no attachment");
    }
    let in_reply_to = ids(email.in_reply_to()).pop().unwrap_or_default();
    let references = ids(email.references());
    let send_time = email
        .date()
        .and_then(|d| chrono::DateTime::from_timestamp(d.to_timestamp(), 0));
    v.check()?;
    Ok(Inbound {
        inbox: inbox.expect("checked"),
        sender: SenderIdentity::Email(address.expect("checked")),
        display_name: from
            .and_then(|a| a.name())
            .unwrap_or_default()
            .chars()
            .take(rules::MAX_NAME)
            .collect(),
        channel: Some(Channel::Email),
        subject: email
            .subject()
            .unwrap_or_default()
            .chars()
            .take(rules::MAX_SUBJECT)
            .collect(),
        text: text.chars().take(rules::MAX_TEXT).collect(),
        html: html.chars().take(500_000).collect(),
        attachments,
        external_id: external_id.expect("checked"),
        in_reply_to,
        references,
        send_time,
    })
}
