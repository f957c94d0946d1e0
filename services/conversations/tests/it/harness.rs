//! Shared setup of the conversations integration tests: the real profiles
//! service and the real conversations service, each bound to `127.0.0.1:0`
//! over a fresh database (SQLite, or PostgreSQL when
//! `RAPPORT_TEST_POSTGRES_URL` is set), conversations calling profiles with
//! its own key, which profiles trusts; a real tonic client and request
//! builders.
use std::net::SocketAddr;

use rapport_conversations::Config;
pub use rapport_proto::conversations as pb;
use rapport_proto::conversations::conversations_service_client::ConversationsServiceClient;
pub use rapport_proto::types::Channel;
use rapport_store::Db;
pub use rapport_testkit::Running;
pub use rapport_testkit::status::{assert_error, assert_violation, describe, expect_err};
pub use rapport_testkit::store::{event_types, outbox_events, payload};
pub use rapport_testkit::tenant_request;
use rapport_testkit::{TEST_SECRET, TestDb};
use tonic::Status;

/// The tenant most tests act as.
pub const TENANT: &str = "acme";
/// A second tenant, for isolation tests.
pub const OTHER_TENANT: &str = "globex";

/// The gRPC client under test.
pub type Client = ConversationsServiceClient<tonic::transport::Channel>;

/// Running profiles and conversations services. Field order is drop order.
pub struct Harness {
    /// Client of conversations.
    pub client: Client,
    /// Client of profiles (to check what senders resolved to).
    pub profiles: rapport_proto::profiles::profiles_service_client::ProfilesServiceClient<
        tonic::transport::Channel,
    >,
    /// The conversations database (outbox inspection).
    pub db: Db,
    /// The profiles database (its outbox: what the calls to it did).
    pub profiles_db: Db,
    /// The SMTP relay conversations submits email to.
    pub smtp: crate::smtp::Sink,
    /// The clock a harness of [`start_at`] drives (none: the system's).
    manual: Option<rapport_usecase::ManualClock>,
    /// Conversations' configuration, bus and clock: more replicas, and a
    /// restart, start from them.
    config: Config,
    bus: rapport_events::Bus,
    service_clock: std::sync::Arc<dyn rapport_conversations::Clock>,
    running: Vec<Running>,
    _testdbs: Vec<TestDb>,
}

/// The configuration of the conversations service under test, calling
/// profiles at `profiles` with `service_key`. The only place these tests
/// build a conversations `Config`.
pub fn conversations_config(testdb: &TestDb, profiles: SocketAddr, service_key: &str) -> Config {
    Config {
        server: rapport_testkit::server_config(),
        database: rapport_testkit::database_config(testdb),
        page_token_secret: TEST_SECRET.into(),
        assertion_public_keys: rapport_testkit::test_assertion_public_key(),
        service_key: service_key.into(),
        profiles: rapport_kit::PeerConfig {
            endpoint: format!("http://{profiles}"),
            ..Default::default()
        },
        // The tests' connectors listen on http://127.0.0.1.
        connectors: rapport_conversations::ConnectorConfig {
            allow_http: true,
            allow_private_addresses: true,
            timeout_ms: 5_000,
        },
        ..Default::default()
    }
}

/// Starts profiles (trusting conversations' key) and conversations, on
/// the system clock: deliveries are retried after real backoffs.
pub async fn start() -> Harness {
    start_trusting(true).await
}

/// [`start`]; `trusted`: whether profiles lists conversations' public key.
pub async fn start_trusting(trusted: bool) -> Harness {
    start_custom(
        trusted,
        None,
        1_000,
        crate::smtp::Sink::start().await,
        plain_relay,
    )
    .await
}

/// Email to the sink at `url`, plain SMTP.
fn plain_relay(url: String) -> rapport_conversations::EmailConfig {
    rapport_conversations::EmailConfig {
        smtp_url: url,
        ..Default::default()
    }
}

/// [`start`] with conversations (and its timer workers) telling time by
/// `clock` ([`Harness::clock`]), looking for due timers every 20 ms.
pub async fn start_at(clock: rapport_usecase::ManualClock) -> Harness {
    start_custom(
        true,
        Some(clock),
        20,
        crate::smtp::Sink::start().await,
        plain_relay,
    )
    .await
}

/// [`start`] submitting email to `smtp` as `email` says, given the
/// sink's plain `smtp://` URL.
pub async fn start_with_relay(
    smtp: crate::smtp::Sink,
    email: impl FnOnce(String) -> rapport_conversations::EmailConfig,
) -> Harness {
    start_custom(true, None, 1_000, smtp, email).await
}

/// `timer_poll_ms`: the service's default for most tests, whose stored
/// messages are compared before and after their delivery.
async fn start_custom(
    trusted: bool,
    manual: Option<rapport_usecase::ManualClock>,
    timer_poll_ms: u64,
    smtp: crate::smtp::Sink,
    email: impl FnOnce(String) -> rapport_conversations::EmailConfig,
) -> Harness {
    let key = rapport_kit::AssertionSigner::generate_seed();
    let public = rapport_kit::AssertionSigner::from_base64(&key)
        .expect("a generated seed")
        .public_key();
    let profiles_testdb = TestDb::fresh()
        .await
        .expect("creating the profiles database");
    let mut keys = rapport_testkit::test_assertion_public_key();
    if trusted {
        keys = format!("{keys},{public}");
    }
    let profiles_config = rapport_profiles::Config {
        server: rapport_testkit::server_config(),
        database: rapport_testkit::database_config(&profiles_testdb),
        page_token_secret: TEST_SECRET.into(),
        assertion_public_keys: keys,
        // As `rapport` composes them: profiles' erasures wait for
        // conversations, the one other service holding customer data here.
        erasure: rapport_profiles::ErasureConfig {
            services: Some(vec![rapport_conversations::EVENTS_NAME.to_owned()]),
            ..Default::default()
        },
        timer_poll_ms: 20,
        ..Default::default()
    };
    let bus = rapport_events::Bus::in_process();
    let profiles = rapport_profiles::build(&profiles_config, &bus)
        .await
        .unwrap_or_else(|e| panic!("building profiles: {e:#}"));
    let profiles_addr = profiles.local_addr();
    let profiles_db = profiles.db().clone();
    let profiles_running = Running::start(move |shutdown| profiles.serve(shutdown));

    let testdb = TestDb::fresh().await.expect("creating the test database");
    let mut config = conversations_config(&testdb, profiles_addr, &key);
    config.email = email(smtp.url());
    config.timer_poll_ms = timer_poll_ms;
    let service_clock: std::sync::Arc<dyn rapport_conversations::Clock> = match &manual {
        Some(clock) => std::sync::Arc::new(clock.clone()),
        None => std::sync::Arc::new(rapport_conversations::SystemClock),
    };
    let service = rapport_conversations::build_with(&config, &bus, service_clock.clone())
        .await
        .unwrap_or_else(|e| panic!("building conversations on {}: {e:#}", testdb.backend_name()));
    let addr = service.local_addr();
    let db = service.db().clone();
    let running = Running::start(move |shutdown| service.serve(shutdown));
    let channel = rapport_testkit::connect(addr).await.expect("connecting");
    let profiles_channel = rapport_testkit::connect(profiles_addr)
        .await
        .expect("connecting to profiles");
    Harness {
        client: ConversationsServiceClient::new(channel),
        profiles: rapport_proto::profiles::profiles_service_client::ProfilesServiceClient::new(
            profiles_channel,
        ),
        db,
        profiles_db,
        smtp,
        manual,
        config,
        bus,
        service_clock,
        running: vec![running, profiles_running],
        _testdbs: vec![testdb, profiles_testdb],
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.running.clear();
    }
}

/// An email inbox at `address`, reopening within `reopen_secs`.
pub fn email_inbox(address: &str, reopen_secs: i64) -> pb::Inbox {
    pb::Inbox {
        display_name: "Support".into(),
        channel: Channel::Email as i32,
        address: address.into(),
        reopen_window: Some(prost_types::Duration {
            seconds: reopen_secs,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// An email message with `external_id`.
pub fn email(text: &str, external_id: &str) -> pb::Message {
    pb::Message {
        text: text.into(),
        external_id: external_id.into(),
        ..Default::default()
    }
}

/// A ReceiveMessage request from the email address `from`.
pub fn receive_request(inbox: &str, from: &str, message: pb::Message) -> pb::ReceiveMessageRequest {
    pb::ReceiveMessageRequest {
        inbox: inbox.into(),
        sender: Some(pb::receive_message_request::Sender::Email(from.into())),
        display_name: "Ada".into(),
        message: Some(message),
        request_id: String::new(),
    }
}

impl Harness {
    /// The clock of a harness started with [`start_at`].
    pub fn clock(&self) -> &rapport_usecase::ManualClock {
        self.manual
            .as_ref()
            .expect("a harness started with start_at drives a clock")
    }

    /// Stops conversations (draining it) and starts it again on the same
    /// database: a restart, as after a deploy or a crash.
    pub async fn restart(&mut self) {
        let running = self.running.remove(0);
        running.shutdown().await.expect("conversations stopped");
        let service =
            rapport_conversations::build_with(&self.config, &self.bus, self.service_clock.clone())
                .await
                .unwrap_or_else(|e| panic!("rebuilding conversations: {e:#}"));
        let addr = service.local_addr();
        self.db = service.db().clone();
        self.running
            .insert(0, Running::start(move |shutdown| service.serve(shutdown)));
        let channel = rapport_testkit::connect(addr).await.expect("connecting");
        self.client = ConversationsServiceClient::new(channel);
    }

    /// Starts one more conversations replica on the same database and
    /// clock (its own listener and timer workers); dropping it stops it.
    pub async fn replica(&self) -> (Running, Client, Db) {
        let service =
            rapport_conversations::build_with(&self.config, &self.bus, self.service_clock.clone())
                .await
                .unwrap_or_else(|e| panic!("building a replica: {e:#}"));
        let addr = service.local_addr();
        let db = service.db().clone();
        let running = Running::start(move |shutdown| service.serve(shutdown));
        let channel = rapport_testkit::connect(addr).await.expect("connecting");
        (running, ConversationsServiceClient::new(channel), db)
    }

    /// Stops the first conversations replica (its client no longer
    /// answers); the replicas [`Harness::replica`] started keep running.
    pub fn stop_first(&mut self) {
        drop(self.running.remove(0));
    }

    /// A clone of the client, for concurrent tasks.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// CreateInbox in `tenant`.
    pub async fn try_create_inbox(
        &self,
        tenant: &str,
        inbox: pb::Inbox,
        request_id: &str,
    ) -> Result<pb::Inbox, Status> {
        self.client()
            .create_inbox(tenant_request(
                tenant,
                pb::CreateInboxRequest {
                    inbox: Some(inbox),
                    request_id: request_id.into(),
                },
            ))
            .await
            .map(|r| r.into_inner().inbox.expect("an inbox"))
    }

    /// CreateInbox in [`TENANT`], panicking on error.
    pub async fn create_inbox(&self, inbox: pb::Inbox) -> pb::Inbox {
        self.try_create_inbox(TENANT, inbox, "")
            .await
            .unwrap_or_else(|s| panic!("CreateInbox failed: {}", describe(&s)))
    }

    /// ReceiveMessage from `email` in `tenant`.
    pub async fn try_receive_in(
        &self,
        tenant: &str,
        inbox: &str,
        from: &str,
        message: pb::Message,
    ) -> Result<pb::ReceiveMessageResponse, Status> {
        self.client()
            .receive_message(tenant_request(
                tenant,
                receive_request(inbox, from, message),
            ))
            .await
            .map(|r| r.into_inner())
    }

    /// ReceiveMessage in [`TENANT`], panicking on error. UNAVAILABLE is
    /// retried with backoff, as every client is told to (the service sheds
    /// load when its database pool is exhausted, as on a starved test
    /// machine running several suites against one PostgreSQL); a retry of
    /// the same message is deduplicated by its external id, so the
    /// concurrency tests still see every invariant.
    pub async fn receive(
        &self,
        inbox: &str,
        from: &str,
        message: pb::Message,
    ) -> pb::ReceiveMessageResponse {
        let mut backoff = std::time::Duration::from_millis(100);
        for _ in 0..7 {
            match self
                .try_receive_in(TENANT, inbox, from, message.clone())
                .await
            {
                Err(s) if s.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                r => {
                    return r.unwrap_or_else(|s| panic!("ReceiveMessage failed: {}", describe(&s)));
                }
            }
        }
        self.try_receive_in(TENANT, inbox, from, message)
            .await
            .unwrap_or_else(|s| panic!("ReceiveMessage failed: {}", describe(&s)))
    }

    /// GetConversation in [`TENANT`].
    pub async fn conversation(&self, name: &str) -> pb::Conversation {
        self.client()
            .get_conversation(tenant_request(
                TENANT,
                pb::GetConversationRequest { name: name.into() },
            ))
            .await
            .unwrap_or_else(|s| panic!("GetConversation failed: {}", describe(&s)))
            .into_inner()
            .conversation
            .expect("a conversation")
    }

    /// ResolveConversation in [`TENANT`].
    pub async fn resolve(&self, name: &str) -> Result<pb::Conversation, Status> {
        self.client()
            .resolve_conversation(tenant_request(
                TENANT,
                pb::ResolveConversationRequest {
                    name: name.into(),
                    code: "answered".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(|r| r.into_inner().conversation.expect("a conversation"))
    }

    /// Every conversation of [`TENANT`] (one page of 500).
    pub async fn conversations(
        &self,
        filter: pb::ListConversationsRequest,
    ) -> Vec<pb::Conversation> {
        self.client()
            .list_conversations(tenant_request(
                TENANT,
                pb::ListConversationsRequest {
                    page_size: 500,
                    ..filter
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("ListConversations failed: {}", describe(&s)))
            .into_inner()
            .conversations
    }
}

/// A customer's own conversation (they wrote first) and a PROACTIVE one
/// Grace's agent starts with them: the setup of proactive sends.
pub async fn proactive(h: &Harness) -> (pb::Conversation, pb::Conversation) {
    use crate::messages::{GRACE, agent, started, try_start};
    agent(h, TENANT, GRACE, pb::AgentKind::Human).await;
    let inbound = started(h).await;
    let proactive = try_start(
        h,
        TENANT,
        pb::Conversation {
            customer: inbound.customer.clone(),
            inbox: inbound.inbox.clone(),
            ..Default::default()
        },
        pb::Origin::Proactive,
        "",
    )
    .await
    .unwrap();
    (inbound, proactive)
}

/// Sets `customer`'s marketing consent by e-mail in profiles.
pub async fn set_consent(
    h: &Harness,
    customer: &str,
    status: rapport_proto::profiles::ConsentStatus,
) {
    use rapport_proto::profiles as ppb;
    h.profiles
        .clone()
        .set_consent(tenant_request(
            TENANT,
            ppb::SetConsentRequest {
                name: customer.into(),
                channel: Channel::Email as i32,
                purpose: ppb::ConsentPurpose::Marketing as i32,
                status: status as i32,
                source: "test".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("SetConsent: {}", describe(&s)));
}

/// Gives `customer` quiet hours from an hour ago to two hours from now
/// (UTC, profiles' default zone); now.
pub async fn quiet_for_two_more_hours(
    h: &Harness,
    customer: &str,
) -> chrono::DateTime<chrono::Utc> {
    use chrono::Timelike as _;
    use rapport_proto::profiles as ppb;
    let now = chrono::Utc::now();
    let minute = now.hour() * 60 + now.minute();
    let hhmm = |m: u32| format!("{:02}:{:02}", (m / 60) % 24, m % 60);
    h.profiles
        .clone()
        .update_customer(tenant_request(
            TENANT,
            ppb::UpdateCustomerRequest {
                customer: Some(ppb::Customer {
                    name: customer.into(),
                    contact_preferences: Some(ppb::ContactPreferences {
                        quiet_hours: Some(ppb::QuietHours {
                            start: hhmm(minute + 24 * 60 - 60),
                            end: hhmm(minute + 120),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["contact_preferences".into()],
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("UpdateCustomer: {}", describe(&s)));
    now
}

/// Creates an available agent of `kind` acting as `principal`, working by
/// `calendar` (a business calendar's name, or empty).
pub async fn create_agent(
    h: &Harness,
    tenant: &str,
    principal: &str,
    kind: pb::AgentKind,
    calendar: &str,
) -> pb::Agent {
    h.client()
        .create_agent(tenant_request(
            tenant,
            pb::CreateAgentRequest {
                agent: Some(pb::Agent {
                    display_name: principal.into(),
                    kind: kind as i32,
                    principal: principal.into(),
                    availability: pb::AgentAvailability::Available as i32,
                    business_calendar: calendar.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("CreateAgent: {}", describe(&s)))
        .into_inner()
        .agent
        .unwrap()
}

/// A calendar open Monday to Friday 09:00–17:00 in `zone`.
pub async fn office_hours(h: &Harness, zone: &str) -> String {
    let days = [
        pb::DayOfWeek::Monday,
        pb::DayOfWeek::Tuesday,
        pb::DayOfWeek::Wednesday,
        pb::DayOfWeek::Thursday,
        pb::DayOfWeek::Friday,
    ];
    h.client()
        .create_business_calendar(tenant_request(
            TENANT,
            pb::CreateBusinessCalendarRequest {
                business_calendar: Some(pb::BusinessCalendar {
                    display_name: format!("Office {zone}"),
                    time_zone: zone.into(),
                    weekly_hours: days
                        .into_iter()
                        .map(|d| pb::WeeklyInterval {
                            day: d as i32,
                            start_time: "09:00".into(),
                            end_time: "17:00".into(),
                        })
                        .collect(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("CreateBusinessCalendar: {}", describe(&s)))
        .into_inner()
        .business_calendar
        .unwrap()
        .name
}

/// UpdateBusinessCalendar in [`TENANT`] of the `paths` of `calendar`
/// (which names the calendar).
pub async fn update_calendar(h: &Harness, calendar: pb::BusinessCalendar, paths: &[&str]) {
    h.client()
        .update_business_calendar(tenant_request(
            TENANT,
            pb::UpdateBusinessCalendarRequest {
                business_calendar: Some(calendar),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("UpdateBusinessCalendar: {}", describe(&s)));
}

/// A target of `seconds`, in business time on `calendar` (a calendar's
/// name) or, empty, in calendar time.
pub fn sla_target(seconds: i64, calendar: &str) -> Option<pb::SlaTarget> {
    Some(pb::SlaTarget {
        duration: Some(prost_types::Duration { seconds, nanos: 0 }),
        business_calendar: calendar.into(),
    })
}

/// `priority`'s first response, next response, periodic update and
/// resolution targets (`secs`; 0: none) on `calendar`.
pub fn sla_targets(
    priority: pb::Priority,
    secs: [i64; 4],
    calendar: &str,
) -> pb::SlaPriorityTargets {
    let t = |s: i64| (s > 0).then(|| sla_target(s, calendar)).flatten();
    pb::SlaPriorityTargets {
        priority: priority as i32,
        first_response: t(secs[0]),
        next_response: t(secs[1]),
        periodic_update: t(secs[2]),
        resolution: t(secs[3]),
    }
}

/// The fallback policy: NORMAL 1 h / 30 min / 2 h / 1 day, URGENT 15 min
/// first response, warning at 50 %, pausing while pending.
pub fn fallback(calendar: &str) -> pb::SlaPolicy {
    pb::SlaPolicy {
        display_name: "Everyone".into(),
        targets: vec![
            sla_targets(pb::Priority::Normal, [3600, 1800, 7200, 86_400], calendar),
            sla_targets(pb::Priority::Urgent, [900, 0, 0, 0], calendar),
        ],
        pause_when_pending: true,
        warn_at_percent: 50,
        ..Default::default()
    }
}

/// CreateSlaPolicy in [`TENANT`].
pub async fn create_policy(h: &Harness, policy: pb::SlaPolicy) -> pb::SlaPolicy {
    try_create_policy(h, policy, "")
        .await
        .unwrap_or_else(|s| panic!("CreateSlaPolicy: {}", describe(&s)))
}

/// CreateSlaPolicy in [`TENANT`] under `request_id`, refused or not.
pub async fn try_create_policy(
    h: &Harness,
    policy: pb::SlaPolicy,
    request_id: &str,
) -> Result<pb::SlaPolicy, tonic::Status> {
    h.client()
        .create_sla_policy(tenant_request(
            TENANT,
            pb::CreateSlaPolicyRequest {
                sla_policy: Some(policy),
                request_id: request_id.into(),
            },
        ))
        .await
        .map(|r| r.into_inner().sla_policy.unwrap())
}

/// Services at `now` under the [`fallback`] policy, in calendar time or
/// (`office`) on [`office_hours`] in UTC, whose name comes back (empty:
/// none).
pub async fn start_under_sla(
    now: chrono::DateTime<chrono::Utc>,
    office: bool,
) -> (Harness, String) {
    let h = start_at(rapport_usecase::ManualClock::at(now)).await;
    let calendar = if office {
        office_hours(&h, "UTC").await
    } else {
        String::new()
    };
    create_policy(&h, fallback(&calendar)).await;
    (h, calendar)
}

/// What the SLA and KPI tests do to a conversation, in [`TENANT`].
impl Harness {
    /// An email from `from` into `inbox`, the `n`th of the test (its
    /// external id): the conversation it landed in.
    pub async fn write(&self, inbox: &str, from: &str, n: u32) -> pb::Conversation {
        self.receive(inbox, from, email("help", &format!("<{n}@x>")))
            .await
            .conversation
            .unwrap()
    }

    /// A public reply to conversation `c` by the agent acting as `who`.
    pub async fn answer(&self, c: &str, who: &str) {
        use crate::messages::{reply, send};
        send(self, TENANT, who, reply(c, "on it", pb::Visibility::Public))
            .await
            .unwrap_or_else(|s| panic!("CreateMessage: {}", describe(&s)));
    }

    /// Assigns conversation `c` to `agent` (an agent's name).
    pub async fn assign(&self, c: &str, agent: &str) {
        self.client()
            .assign_conversation(tenant_request(
                TENANT,
                pb::AssignConversationRequest {
                    name: c.into(),
                    assignee: agent.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("AssignConversation: {}", describe(&s)));
    }

    /// Marks conversation `c` pending (waiting on the customer).
    pub async fn pending(&self, c: &str) {
        self.client()
            .mark_conversation_pending(tenant_request(
                TENANT,
                pb::MarkConversationPendingRequest {
                    name: c.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("MarkConversationPending: {}", describe(&s)));
    }
}
