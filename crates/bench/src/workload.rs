//! What the scenarios call: echo, the profiles RPCs and the conversations
//! RPCs, with realistic payloads, and the credentials a call carries (an API
//! key for the gateway, a signed tenant assertion for a service called
//! directly).
use std::{collections::BTreeMap, ops::Range, sync::Arc};

use anyhow::Context as _;

use prost::Message as _;
use rapport_kit::assertion::ASSERTION_HEADER;
use rapport_proto::{
    bench::{EchoRequest, echo_service_client::EchoServiceClient},
    conversations::{
        CreateInboxRequest, Inbox, ListCustomerHistoryRequest, Message, ReceiveMessageRequest,
        conversations_service_client::ConversationsServiceClient, receive_message_request::Sender,
    },
    profiles::{
        AttributeValue, ContactPreferences, CreateCustomerRequest, Customer, EmailAddress,
        GetCustomerRequest, LookupCustomerRequest, PhoneNumber, SearchCustomersRequest,
        attribute_value::Kind, lookup_customer_request::Identity,
        profiles_service_client::ProfilesServiceClient,
    },
};
use tonic::{Request, Status, metadata::AsciiMetadataValue, transport::Channel};

use crate::engine::{Caller, Workload};

/// Credentials attached to every call of a scenario.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Nothing (echo called directly).
    None,
    /// `authorization: Bearer rk_…`, for calls through the gateway.
    ApiKey(AsciiMetadataValue),
    /// `x-rapport-assertion` by request message type, for a service called
    /// directly, as the gateway would sign them: an assertion is good for one
    /// method only.
    Assertions(std::sync::Arc<std::collections::HashMap<&'static str, AsciiMetadataValue>>),
}

impl Credentials {
    /// An API key credential.
    pub fn api_key(secret: &str) -> anyhow::Result<Self> {
        Ok(Self::ApiKey(format!("Bearer {secret}").parse()?))
    }

    /// One assertion per RPC of the contracts, `sign(path)` each (from
    /// `rapport_kit::AssertionSigner::sign`).
    pub fn assertions(sign: impl Fn(&'static str) -> String) -> anyhow::Result<Self> {
        let mut by_request = std::collections::HashMap::new();
        for method in rapport_proto::methods::METHODS {
            by_request.insert(method.request, sign(method.path).parse()?);
        }
        Ok(Self::Assertions(std::sync::Arc::new(by_request)))
    }

    fn request<T: prost::Name>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        match self {
            Self::None => {}
            Self::ApiKey(v) => {
                request.metadata_mut().insert("authorization", v.clone());
            }
            Self::Assertions(by_request) => {
                if let Some(v) = by_request.get(T::full_name().as_str()) {
                    request.metadata_mut().insert(ASSERTION_HEADER, v.clone());
                }
            }
        }
        request
    }
}

/// The identities of customer number `i` of a family of customers: a unique
/// key (the local part of its emails) and a unique E.164 phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identities {
    /// `bench-…`: the work email is `{key}@example.com`.
    pub key: String,
    /// `+…`.
    pub phone: String,
}

impl Identities {
    /// The customers the harness seeds through the API: `bench-{i}@example.com`.
    pub fn seeded(i: u64) -> Self {
        Self {
            key: format!("bench-{i}"),
            phone: format!("+98{:010}", i % 10_000_000_000),
        }
    }

    /// Customers created by a `profiles.create` run. `run` (0..10000) tells
    /// harness invocations apart, `stream` (0..10) scenarios within one, so
    /// creates never collide with each other or with the seeded set. Phones
    /// are unique up to 10,000,000 creates per stream.
    pub fn created(run: u16, stream: u8, i: u64) -> Self {
        Self {
            key: format!("bench-r{run}-s{stream}-{i}"),
            phone: format!("+99{:04}{}{:07}", run % 10_000, stream % 10, i % 10_000_000),
        }
    }

    /// The primary (work) email.
    pub fn email(&self) -> String {
        format!("{}@example.com", self.key)
    }
}

/// A realistic customer of a few hundred bytes: names, two emails, a phone,
/// locale, time zone, a language preference, two tags and three attributes.
pub fn customer(i: u64, ids: &Identities) -> Customer {
    let attributes = BTreeMap::from([
        (
            "plan".to_owned(),
            AttributeValue {
                kind: Some(Kind::StringValue("premium".to_owned())),
            },
        ),
        (
            "lifetime_value_cents".to_owned(),
            AttributeValue {
                kind: Some(Kind::IntValue(129_900 + (i % 1000) as i64)),
            },
        ),
        (
            "signup_channel".to_owned(),
            AttributeValue {
                kind: Some(Kind::StringValue("web".to_owned())),
            },
        ),
    ]);
    Customer {
        display_name: format!("Bench Customer {i}"),
        given_name: "Bench".to_owned(),
        family_name: format!("Customer {i}"),
        emails: vec![
            EmailAddress {
                address: ids.email(),
                label: "work".to_owned(),
                ..Default::default()
            },
            EmailAddress {
                address: format!("{}@home.example.net", ids.key),
                label: "home".to_owned(),
                ..Default::default()
            },
        ],
        phones: vec![PhoneNumber {
            number: ids.phone.clone(),
            label: "mobile".to_owned(),
            ..Default::default()
        }],
        locale: "en-GB".to_owned(),
        time_zone: "Europe/London".to_owned(),
        contact_preferences: Some(ContactPreferences {
            preferred_language: "en".to_owned(),
            ..Default::default()
        }),
        tags: vec!["newsletter".to_owned(), "vip".to_owned()],
        attributes,
        ..Default::default()
    }
}

/// Encoded size of the realistic customer: the echo payload size, so the
/// ceiling moves as many bytes as the scenarios it is compared with.
pub fn customer_encoded_len() -> usize {
    customer(123_456, &Identities::seeded(123_456)).encoded_len()
}

/// Customers that exist before a run: what get, lookup and search draw from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerSet {
    /// Resource names, `customers/{id}`.
    pub names: Vec<String>,
    /// The primary email of each, in the same order.
    pub emails: Vec<String>,
}

impl CustomerSet {
    /// Index of the customer that call `i` uses: spread uniformly over the
    /// set (not sequential, so no call pattern favours a cache).
    pub fn pick(&self, i: u64) -> usize {
        spread(i, self.names.len())
    }

    /// Number of customers.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Index in `0..len` of call `i`: spread uniformly, in a fixed pseudo-random
/// order (0 when `len` is 0).
pub fn spread(i: u64, len: usize) -> usize {
    (splitmix64(i) % len.max(1) as u64) as usize
}

/// A bijective 64-bit mix (SplitMix64's finalizer): a fixed pseudo-random
/// order with no state to share between workers.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `rapport.bench.v1.EchoService/Echo` with a fixed payload.
#[derive(Debug, Clone)]
pub struct Echo {
    /// Bytes sent (and returned).
    pub payload: Vec<u8>,
    /// Credentials.
    pub credentials: Credentials,
}

impl Echo {
    /// Echo with a payload of `bytes` bytes.
    pub fn new(bytes: usize, credentials: Credentials) -> Self {
        Self {
            payload: (0..bytes).map(|b| (b % 251) as u8).collect(),
            credentials,
        }
    }
}

/// Caller of [`Echo`].
#[derive(Debug)]
pub struct EchoCaller {
    client: EchoServiceClient<Channel>,
    payload: Vec<u8>,
    credentials: Credentials,
}

impl Workload for Echo {
    type Caller = EchoCaller;

    fn caller(&self, channel: Channel) -> EchoCaller {
        EchoCaller {
            client: EchoServiceClient::new(channel),
            payload: self.payload.clone(),
            credentials: self.credentials.clone(),
        }
    }
}

impl Caller for EchoCaller {
    async fn call(&mut self, _i: u64) -> Result<(), Status> {
        let request = self.credentials.request(EchoRequest {
            payload: self.payload.clone(),
        });
        self.client.echo(request).await.map(drop)
    }
}

/// Which profiles RPC a [`Profiles`] workload makes.
#[derive(Debug, Clone)]
pub enum ProfilesCall {
    /// `GetCustomer` of a customer drawn from the set.
    Get(Arc<CustomerSet>),
    /// `LookupCustomer` by the primary email of a customer drawn from the set.
    Lookup(Arc<CustomerSet>),
    /// `SearchCustomers` for the primary email of a customer drawn from the
    /// set (page size 10): an exact identity hit plus the substring scan.
    Search(Arc<CustomerSet>),
    /// `CreateCustomer` of a new realistic customer with a `request_id`, as
    /// clients are told to send; identities from [`Identities::created`].
    Create {
        /// Tells harness invocations apart.
        run: u16,
        /// Tells scenarios of one invocation apart.
        stream: u8,
    },
}

/// `rapport.profiles.v1.ProfilesService` calls.
#[derive(Debug, Clone)]
pub struct Profiles {
    /// Which RPC.
    pub call: ProfilesCall,
    /// Credentials.
    pub credentials: Credentials,
}

/// Caller of [`Profiles`].
#[derive(Debug)]
pub struct ProfilesCaller {
    client: ProfilesServiceClient<Channel>,
    call: ProfilesCall,
    credentials: Credentials,
}

impl Workload for Profiles {
    type Caller = ProfilesCaller;

    fn caller(&self, channel: Channel) -> ProfilesCaller {
        ProfilesCaller {
            client: ProfilesServiceClient::new(channel),
            call: self.call.clone(),
            credentials: self.credentials.clone(),
        }
    }
}

impl Caller for ProfilesCaller {
    async fn call(&mut self, i: u64) -> Result<(), Status> {
        let credentials = &self.credentials;
        match &self.call {
            ProfilesCall::Get(set) => {
                let name = set.names[set.pick(i)].clone();
                let request = credentials.request(GetCustomerRequest { name });
                self.client.get_customer(request).await.map(drop)
            }
            ProfilesCall::Lookup(set) => {
                let email = set.emails[set.pick(i)].clone();
                let request = credentials.request(LookupCustomerRequest {
                    identity: Some(Identity::Email(email)),
                });
                self.client.lookup_customer(request).await.map(drop)
            }
            ProfilesCall::Search(set) => {
                let query = set.emails[set.pick(i)].clone();
                let request = credentials.request(SearchCustomersRequest {
                    query,
                    page_size: 10,
                    page_token: String::new(),
                });
                self.client.search_customers(request).await.map(drop)
            }
            ProfilesCall::Create { run, stream } => {
                let ids = Identities::created(*run, *stream, i);
                let request = credentials.request(CreateCustomerRequest {
                    customer: Some(customer(i, &ids)),
                    request_id: ids.key,
                });
                self.client.create_customer(request).await.map(drop)
            }
        }
    }
}

/// Which conversations RPC a [`Conversations`] workload makes.
#[derive(Debug, Clone)]
pub enum ConversationsCall {
    /// `ReceiveMessage` on `inbox` from a new sender each call (the email of
    /// [`Identities::created`]): profiles creates the customer, conversations
    /// a conversation with a case number.
    ReceiveNew {
        /// `inboxes/{id}`.
        inbox: String,
        /// Tells harness invocations apart.
        run: u16,
        /// Tells scenarios of one invocation apart.
        stream: u8,
    },
    /// `ReceiveMessage` on `inbox` from a sender drawn from `senders`, who
    /// wrote before: threaded into their open conversation.
    ReceiveKnown {
        /// `inboxes/{id}`.
        inbox: String,
        /// Emails of the known senders.
        senders: Arc<Vec<String>>,
        /// Tells harness invocations apart.
        run: u16,
        /// Tells scenarios of one invocation apart.
        stream: u8,
    },
    /// `ListCustomerHistory` of `customer`: one page of `page_size`,
    /// starting at a token drawn from `page_tokens` (`""`: the newest).
    History {
        /// `customers/{id}`.
        customer: String,
        /// Where pages start.
        page_tokens: Arc<Vec<String>>,
        /// Messages per page.
        page_size: i32,
    },
    /// `QueryInteractionMetrics`, the same request each call.
    Metrics(rapport_proto::conversations::QueryInteractionMetricsRequest),
}

/// `rapport.conversations.v1.ConversationsService` calls.
#[derive(Debug, Clone)]
pub struct Conversations {
    /// Which RPC.
    pub call: ConversationsCall,
    /// Credentials.
    pub credentials: Credentials,
}

/// Caller of [`Conversations`].
#[derive(Debug)]
pub struct ConversationsCaller {
    client: ConversationsServiceClient<Channel>,
    call: ConversationsCall,
    credentials: Credentials,
}

impl Workload for Conversations {
    type Caller = ConversationsCaller;

    fn caller(&self, channel: Channel) -> ConversationsCaller {
        ConversationsCaller {
            client: ConversationsServiceClient::new(channel),
            call: self.call.clone(),
            credentials: self.credentials.clone(),
        }
    }
}

impl Caller for ConversationsCaller {
    async fn call(&mut self, i: u64) -> Result<(), Status> {
        let credentials = &self.credentials;
        let request = match &self.call {
            ConversationsCall::ReceiveNew { inbox, run, stream } => {
                let ids = Identities::created(*run, *stream, i);
                received(inbox, &ids.email(), &ids.key)
            }
            ConversationsCall::ReceiveKnown {
                inbox,
                senders,
                run,
                stream,
            } => {
                let sender = &senders[spread(i, senders.len())];
                received(inbox, sender, &Identities::created(*run, *stream, i).key)
            }
            ConversationsCall::History {
                customer,
                page_tokens,
                page_size,
            } => {
                let request = credentials.request(ListCustomerHistoryRequest {
                    customer: customer.clone(),
                    page_size: *page_size,
                    page_token: page_tokens[spread(i, page_tokens.len())].clone(),
                });
                return self.client.list_customer_history(request).await.map(drop);
            }
            ConversationsCall::Metrics(query) => {
                let request = credentials.request(query.clone());
                return self
                    .client
                    .query_interaction_metrics(request)
                    .await
                    .map(drop);
            }
        };
        let request = credentials.request(request);
        self.client.receive_message(request).await.map(drop)
    }
}

/// A realistic inbound email from `sender` on `inbox`, its external id (a
/// Message-ID) unique by `key`.
fn received(inbox: &str, sender: &str, key: &str) -> ReceiveMessageRequest {
    ReceiveMessageRequest {
        inbox: inbox.to_owned(),
        sender: Some(Sender::Email(sender.to_owned())),
        display_name: "Bench Customer".to_owned(),
        message: Some(Message {
            subject: "Where is my order?".to_owned(),
            text: "Hello, I ordered a pair of boots two weeks ago and the tracking page has \
                   shown no update since Monday. Could you tell me when it will arrive? \
                   Thank you."
                .to_owned(),
            external_id: format!("<{key}@mail.example.com>"),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// Creates an email inbox at `address` (without auto-acknowledgement: no
/// outbound delivery runs beside the measured calls) and returns its name.
pub async fn create_email_inbox(
    channel: Channel,
    credentials: &Credentials,
    address: &str,
) -> anyhow::Result<String> {
    let request = credentials.request(CreateInboxRequest {
        inbox: Some(Inbox {
            display_name: "Bench support".to_owned(),
            channel: rapport_proto::types::Channel::Email as i32,
            address: address.to_owned(),
            ..Default::default()
        }),
        request_id: String::new(),
    });
    let inbox = ConversationsServiceClient::new(channel)
        .create_inbox(request)
        .await
        .context("creating the bench inbox")?
        .into_inner()
        .inbox
        .context("CreateInbox returned no inbox")?;
    Ok(inbox.name)
}

/// Creates the fallback SLA policy of the bench tenant: a first response
/// within `first_response_secs` of calendar time at normal priority (a new
/// conversation's), no warning; returns its name (`slaPolicies/{id}`).
pub async fn create_first_response_policy(
    channel: Channel,
    credentials: &Credentials,
    first_response_secs: i64,
) -> anyhow::Result<String> {
    use rapport_proto::conversations::{
        CreateSlaPolicyRequest, Priority, SlaPolicy, SlaPriorityTargets, SlaTarget,
    };
    let request = credentials.request(CreateSlaPolicyRequest {
        sla_policy: Some(SlaPolicy {
            display_name: "Bench first response".to_owned(),
            targets: vec![SlaPriorityTargets {
                priority: Priority::Normal as i32,
                first_response: Some(SlaTarget {
                    duration: Some(prost_types::Duration {
                        seconds: first_response_secs,
                        nanos: 0,
                    }),
                    business_calendar: String::new(),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        request_id: String::new(),
    });
    let policy = ConversationsServiceClient::new(channel)
        .create_sla_policy(request)
        .await
        .context("creating the bench SLA policy")?
        .into_inner()
        .sla_policy
        .context("CreateSlaPolicy returned no policy")?;
    Ok(policy.name)
}

/// Makes each of `senders` known to conversations by receiving one message
/// from them on `inbox`, `parallel` calls at a time: the senders of
/// [`ConversationsCall::ReceiveKnown`].
pub async fn introduce_senders(
    channel: Channel,
    credentials: &Credentials,
    inbox: &str,
    senders: Arc<Vec<String>>,
    parallel: usize,
) -> anyhow::Result<()> {
    let parallel = parallel.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..parallel {
        let mut client = ConversationsServiceClient::new(channel.clone());
        let (credentials, inbox, senders) =
            (credentials.clone(), inbox.to_owned(), senders.clone());
        tasks.spawn(async move {
            for (k, sender) in senders.iter().enumerate().skip(lane).step_by(parallel) {
                let request = credentials.request(received(&inbox, sender, &format!("known-{k}")));
                client
                    .receive_message(request)
                    .await
                    .with_context(|| format!("receiving the first message of {sender}"))?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a setup task panicked")??;
    }
    Ok(())
}

/// Creates customers number `range` ([`customer`] with [`Identities::seeded`])
/// through `CreateCustomer`, `parallel` calls at a time: the set the read
/// scenarios draw from, on a database the harness started empty.
pub async fn create_customers(
    channel: Channel,
    credentials: &Credentials,
    range: Range<u64>,
    parallel: usize,
) -> anyhow::Result<CustomerSet> {
    let parallel = parallel.max(1) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..parallel {
        let mut client = ProfilesServiceClient::new(channel.clone());
        let credentials = credentials.clone();
        let range = range.clone();
        tasks.spawn(async move {
            let mut made = Vec::new();
            for i in range.skip(lane as usize).step_by(parallel as usize) {
                let ids = Identities::seeded(i);
                let request = credentials.request(CreateCustomerRequest {
                    customer: Some(customer(i, &ids)),
                    request_id: String::new(),
                });
                let created = client
                    .create_customer(request)
                    .await
                    .with_context(|| format!("creating customer {}", ids.email()))?
                    .into_inner()
                    .customer
                    .context("CreateCustomer returned no customer")?;
                made.push((i, created.name, ids.email()));
            }
            anyhow::Ok(made)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("a seeding task panicked")??);
    }
    all.sort_unstable_by_key(|(i, _, _)| *i);
    Ok(CustomerSet {
        names: all.iter().map(|(_, name, _)| name.clone()).collect(),
        emails: all.into_iter().map(|(_, _, email)| email).collect(),
    })
}

/// Looks customers up by email through `LookupCustomer`, `parallel` calls at
/// a time; emails nobody holds are skipped. How the harness finds the ids of
/// customers `rapport seed` wrote.
pub async fn lookup_customers(
    channel: Channel,
    credentials: &Credentials,
    emails: Vec<String>,
    parallel: usize,
) -> anyhow::Result<CustomerSet> {
    let parallel = parallel.max(1);
    let emails = Arc::new(emails);
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..parallel {
        let mut client = ProfilesServiceClient::new(channel.clone());
        let credentials = credentials.clone();
        let emails = emails.clone();
        tasks.spawn(async move {
            let mut found = Vec::new();
            for (k, email) in emails.iter().enumerate().skip(lane).step_by(parallel) {
                let request = credentials.request(LookupCustomerRequest {
                    identity: Some(Identity::Email(email.clone())),
                });
                match client.lookup_customer(request).await {
                    Ok(response) => {
                        let customer = response
                            .into_inner()
                            .customer
                            .context("LookupCustomer returned no customer")?;
                        found.push((k, customer.name, email.clone()));
                    }
                    Err(status) if status.code() == tonic::Code::NotFound => {}
                    Err(status) => {
                        return Err(anyhow::Error::new(status))
                            .with_context(|| format!("looking up {email}"));
                    }
                }
            }
            anyhow::Ok(found)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("a lookup task panicked")??);
    }
    all.sort_unstable_by_key(|(k, _, _)| *k);
    Ok(CustomerSet {
        names: all.iter().map(|(_, name, _)| name.clone()).collect(),
        emails: all.into_iter().map(|(_, _, email)| email).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_realistic_customer_is_a_few_hundred_bytes() {
        let len = customer_encoded_len();
        assert!((200..=600).contains(&len), "{len} bytes");
    }

    #[test]
    fn identities_never_collide_across_families() {
        let a = Identities::created(7, 1, 42);
        let b = Identities::created(7, 2, 42);
        let c = Identities::seeded(42);
        assert_ne!(a.phone, b.phone);
        assert_ne!(a.key, b.key);
        assert_ne!(a.phone, c.phone);
        assert_eq!(c.email(), "bench-42@example.com");
        for ids in [&a, &b, &c] {
            // E.164: '+' then at most 15 digits.
            assert!(ids.phone.len() <= 16, "{}", ids.phone);
            assert!(ids.phone[1..].chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn received_messages_are_unique_by_key() {
        let a = received(
            "inboxes/x",
            "a@example.com",
            &Identities::created(1, 2, 3).key,
        );
        let b = received(
            "inboxes/x",
            "a@example.com",
            &Identities::created(1, 2, 4).key,
        );
        let (a, b) = (a.message.unwrap(), b.message.unwrap());
        assert_ne!(a.external_id, b.external_id);
        assert_eq!(a.external_id, "<bench-r1-s2-3@mail.example.com>");
        assert!(!a.text.is_empty());
    }

    #[test]
    fn picks_cover_the_set() {
        let set = CustomerSet {
            names: (0..10).map(|i| format!("customers/{i}")).collect(),
            emails: (0..10).map(|i| format!("{i}@example.com")).collect(),
        };
        let mut seen = [false; 10];
        for i in 0..1000 {
            seen[set.pick(i)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
