//! `rapport dev` as a user runs it — one process, embedded databases, the
//! gateway in front — walking the conversations story of the README through
//! the gateway: an email from an unknown address becomes a customer and a
//! case with an acknowledgement, an agent's reply reaches the SMTP relay
//! threaded, and the customer's answer lands in the same case.
use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};

use rapport_proto::{conversations as pb, profiles as profiles_pb};
use rapport_testkit::smtp::Sink;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};
use tonic::{Request, metadata::MetadataValue, transport::Channel};

type Conversations = pb::conversations_service_client::ConversationsServiceClient<Channel>;
type Profiles = profiles_pb::profiles_service_client::ProfilesServiceClient<Channel>;

/// `rapport dev` over `data_dir`, every listener on a free port, email to
/// `smtp_url`; the child, the gateway's address and the bootstrap key it
/// prints for the user to copy.
async fn dev(data_dir: &Path, smtp_url: &str) -> (Child, SocketAddr, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rapport"));
    command
        .arg("dev")
        .arg("--data-dir")
        .arg(data_dir)
        .env("RAPPORT_LOG__FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("RAPPORT_CONVERSATIONS__EMAIL__SMTP_URL", smtp_url)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME");
    for service in ["GATEWAY", "PROFILES", "WEBHOOKS", "CONVERSATIONS"] {
        command.env(format!("RAPPORT_{service}__SERVER__LISTEN"), "127.0.0.1:0");
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting rapport dev");
    let mut printed = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(120), async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(log) = serde_json::from_str::<serde_json::Value>(&line)
                && log["message"] == "gateway serving"
                && let Some(addr) = log["addr"].as_str()
            {
                return addr.parse::<SocketAddr>().unwrap();
            }
            seen.push(line);
        }
        panic!("rapport dev exited before serving:\n{}", seen.join("\n"));
    })
    .await
    .expect("rapport dev logs the gateway's address");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let key = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = printed.next_line().await.unwrap() {
            if let Some(key) = line.trim().strip_prefix("KEY=") {
                return key.to_owned();
            }
        }
        panic!("rapport dev printed no KEY=");
    })
    .await
    .expect("rapport dev prints the bootstrap key");
    tokio::spawn(async move { while let Ok(Some(_)) = printed.next_line().await {} });
    (child, addr, key)
}

fn with_key<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let bearer: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
    request.metadata_mut().insert("authorization", bearer);
    request
}

fn raw_email(lines: &[&str]) -> Vec<u8> {
    let mut raw = lines.join("\r\n");
    raw.push_str("\r\n");
    raw.into_bytes()
}

#[tokio::test]
async fn an_email_from_a_stranger_becomes_a_case_answered_and_threaded_through_the_gateway() {
    let data = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    // The key is the one `rapport dev` printed, as the README has the user
    // copy it.
    let (_child, gateway, key) = dev(data.path(), &sink.url()).await;
    let key_id = rapport_gateway::auth::api_keys::key_id(&key).expect("an API key");
    let channel = rapport_testkit::connect(gateway).await.expect("connecting");
    let mut conversations = Conversations::new(channel.clone());
    let mut profiles = Profiles::new(channel);

    // The key's holder answers as an agent; an email inbox acknowledges.
    conversations
        .create_agent(with_key(
            &key,
            pb::CreateAgentRequest {
                agent: Some(pb::Agent {
                    display_name: "Grace".into(),
                    kind: pb::AgentKind::Human as i32,
                    principal: format!("apiKeys/{key_id}"),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect("CreateAgent through the gateway");
    let inbox = conversations
        .create_inbox(with_key(
            &key,
            pb::CreateInboxRequest {
                inbox: Some(pb::Inbox {
                    display_name: "Support".into(),
                    channel: rapport_proto::types::Channel::Email as i32,
                    address: "support@demo.example".into(),
                    auto_acknowledgement: Some(pb::AutoAcknowledgement {
                        enabled: true,
                        subject: "Case {{case_number}} received".into(),
                        body: "We have your case {{case_number}}.".into(),
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect("CreateInbox through the gateway")
        .into_inner()
        .inbox
        .unwrap();

    // An email from an address nobody knows.
    let first = conversations
        .receive_email(with_key(
            &key,
            pb::ReceiveEmailRequest {
                inbox: inbox.name.clone(),
                raw: raw_email(&[
                    "From: Ada Lovelace <ada@example.com>",
                    "To: Support <support@demo.example>",
                    "Subject: My order never came",
                    "Message-ID: <order-1@example.com>",
                    "Content-Type: text/plain; charset=utf-8",
                    "",
                    "Order 42 has not arrived.",
                ]),
                request_id: String::new(),
            },
        ))
        .await
        .expect("ReceiveEmail through the gateway")
        .into_inner();
    assert!(first.created);
    let case = first.conversation.unwrap();
    assert!(case.case_number > 0, "{case:?}");
    // The stranger is a customer now, found by the address.
    let customer = profiles
        .lookup_customer(with_key(
            &key,
            profiles_pb::LookupCustomerRequest {
                identity: Some(profiles_pb::lookup_customer_request::Identity::Email(
                    "ada@example.com".into(),
                )),
            },
        ))
        .await
        .expect("the sender was made a customer")
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(customer.name, case.customer);

    // The acknowledgement reached the relay, naming the case, threaded.
    let ack = sink
        .wait_for("Subject", &format!("Case {} received", case.case_number))
        .await;
    assert_eq!(ack.from, "support@demo.example");
    assert_eq!(ack.to, ["ada@example.com"]);
    assert_eq!(
        ack.header("In-Reply-To").as_deref(),
        Some("<order-1@example.com>")
    );

    // The agent answers; the relay gets it from the inbox, threaded.
    let reply = conversations
        .create_message(with_key(
            &key,
            pb::CreateMessageRequest {
                parent: case.name.clone(),
                message: Some(pb::Message {
                    text: "It left our warehouse today.".into(),
                    visibility: pb::Visibility::Public as i32,
                    ..Default::default()
                }),
                request_id: "reply-1".into(),
            },
        ))
        .await
        .expect("CreateMessage through the gateway")
        .into_inner()
        .message
        .unwrap();
    let mail = sink.wait_for("Message-ID", &reply.external_id).await;
    assert_eq!(mail.from, "support@demo.example");
    // It answers the latest message of the thread (the acknowledgement)
    // and references the whole thread from her first email.
    assert_eq!(mail.header("In-Reply-To"), ack.header("Message-ID"));
    assert_eq!(
        mail.header("References"),
        Some(format!(
            "<order-1@example.com> {}",
            ack.header("Message-ID").unwrap()
        ))
    );
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Re: My order never came")
    );
    assert!(mail.data.contains("It left our warehouse today."));

    // Her answer to that reply lands in the same case.
    let answer = conversations
        .receive_email(with_key(
            &key,
            pb::ReceiveEmailRequest {
                inbox: inbox.name.clone(),
                raw: raw_email(&[
                    "From: Ada Lovelace <ada@example.com>",
                    "To: Support <support@demo.example>",
                    "Subject: Re: My order never came",
                    "Message-ID: <order-2@example.com>",
                    &format!("In-Reply-To: {}", reply.external_id),
                    &format!("References: <order-1@example.com> {}", reply.external_id),
                    "Content-Type: text/plain; charset=utf-8",
                    "",
                    "Thank you!",
                ]),
                request_id: String::new(),
            },
        ))
        .await
        .expect("ReceiveEmail of the answer")
        .into_inner();
    let threaded = answer.conversation.unwrap();
    assert_eq!(threaded.name, case.name);
    assert_eq!(threaded.case_number, case.case_number);
    assert_eq!(answer.message.unwrap().text, "Thank you!");

    // A call without the key is refused at the gateway, before any service.
    let refused = conversations
        .get_conversation(Request::new(pb::GetConversationRequest {
            name: case.name.clone(),
        }))
        .await
        .expect_err("no key");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}
