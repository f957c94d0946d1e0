//! ReceiveEmail: raw RFC 5322 in real-world MIME shapes — multipart/
//! alternative inside multipart/mixed with an attachment, encoded headers,
//! a non-UTF-8 charset, a quoted earlier reply — threaded back by
//! References to the conversation of the message it answers.
use tonic::Code;

use crate::harness::*;
use crate::messages::{GRACE, agent, reply, send};

async fn receive_email(
    h: &Harness,
    inbox: &str,
    raw: &str,
) -> Result<pb::ReceiveEmailResponse, tonic::Status> {
    h.client()
        .receive_email(tenant_request(
            TENANT,
            pb::ReceiveEmailRequest {
                inbox: inbox.into(),
                raw: raw.replace('\n', "\r\n").into_bytes(),
                request_id: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

const FIRST: &str = r#"From: =?UTF-8?B?QWRhIEzDtnZlbGFjZQ==?= <Ada@Example.com>
To: Support <support@acme.example>
Subject: =?ISO-8859-1?Q?Caf=E9_machine_broken?=
Date: Tue, 1 Dec 2026 09:30:00 +0000
Message-ID: <first-1@mail.example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8

It makes no coffee.
--inner
Content-Type: text/html; charset=utf-8

<p>It makes <b>no</b> coffee.</p>
--inner--
--outer
Content-Type: image/jpeg; name="machine.jpg"
Content-Disposition: attachment; filename="machine.jpg"
Content-Transfer-Encoding: base64

/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcG
--outer--
"#;

#[tokio::test]
async fn a_raw_email_is_parsed_stored_once_and_its_answer_threads_back() {
    let h = start().await;
    agent(&h, TENANT, GRACE, pb::AgentKind::Human).await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;

    let first = receive_email(&h, &inbox.name, FIRST).await.unwrap();
    assert!(first.created);
    let m = first.message.unwrap();
    let c = first.conversation.unwrap();
    assert_eq!(
        m.subject, "Café machine broken",
        "an encoded header, ISO-8859-1"
    );
    assert_eq!(m.text.trim(), "It makes no coffee.");
    assert_eq!(m.html.trim(), "<p>It makes <b>no</b> coffee.</p>");
    assert_eq!(m.external_id, "<first-1@mail.example.com>");
    assert_eq!(m.channel, Channel::Email as i32);
    assert_eq!(m.attachments.len(), 1);
    let a = &m.attachments[0];
    assert_eq!(
        (a.file_name.as_str(), a.content_type.as_str()),
        ("machine.jpg", "image/jpeg")
    );
    assert_eq!(a.size_bytes, 30, "decoded bytes, counted, not kept");
    assert_eq!(a.uri, "");
    assert_eq!(c.subject, "Café machine broken");
    // The sender's name from an encoded From.
    let customer = h
        .profiles
        .clone()
        .get_customer(tenant_request(
            TENANT,
            rapport_proto::profiles::GetCustomerRequest {
                name: c.customer.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(customer.display_name, "Ada Lövelace");
    // The same email again is the stored one.
    let again = receive_email(&h, &inbox.name, FIRST).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.message.unwrap().name, m.name);

    // An agent writes in a second conversation with her; her answer names
    // it only in References, in ISO-8859-1, quoting our message.
    let started = h
        .client()
        .create_conversation(tenant_request(
            TENANT,
            pb::CreateConversationRequest {
                conversation: Some(pb::Conversation {
                    customer: c.customer.clone(),
                    inbox: inbox.name.clone(),
                    subject: "Your invoice".into(),
                    ..Default::default()
                }),
                origin: pb::Origin::Outbound as i32,
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    let ours = send(
        &h,
        TENANT,
        GRACE,
        reply(&started.name, "Here it is.", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let answer = format!(
        "From: Ada <ada@example.com>\n\
         To: support@acme.example\n\
         Subject: Re: Your invoice\n\
         Message-ID: <answer-2@mail.example.com>\n\
         References: <unknown@elsewhere.example> {}\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=ISO-8859-1\n\
         Content-Transfer-Encoding: quoted-printable\n\
         \n\
         Merci, re=E7u.\n\
         \n\
         On Tue, 1 Dec 2026 at 10:00, Support <support@acme.example> wrote:\n\
         > Here it is.\n",
        ours.external_id
    );
    let r = receive_email(&h, &inbox.name, &answer).await.unwrap();
    assert_eq!(r.conversation.unwrap().name, started.name);
    assert_eq!(
        r.message.unwrap().text,
        "Merci, reçu.",
        "decoded, the quote trimmed"
    );
}

#[tokio::test]
async fn an_email_without_message_id_or_sender_is_refused() {
    let h = start().await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let bad = expect_err(receive_email(&h, &inbox.name, "Subject: hi\n\nno sender, no id\n").await);
    assert_violation(&bad, "raw");
    let empty = expect_err(receive_email(&h, "inboxes/x", "").await);
    assert_violation(&empty, "inbox");
    assert_violation(&empty, "raw");
    assert_eq!(empty.code(), Code::InvalidArgument);
}
