//! Bulk loading of one customer's long history, for benchmarks (`rapport
//! bench`'s `conversations.history`): a million messages through
//! ReceiveMessage would take longer than everything the bench measures.
//!
//! The history is written through the service's own storage code: domain
//! values built by its rules (a conversation per batch of inbound email
//! messages, resolved by [`rules::transition`]), committed by the
//! repository, one change per conversation — the rows ReceiveMessage would
//! leave, without the outbox events (nobody consumes a seed) and without a
//! thread row (the customer writes nothing more). It bypasses the use-case
//! on purpose and must not be used to write anything a client sent.
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use chrono::{Datelike as _, Utc};
use rapport_kit::PageTokens;
use rapport_store::Db;

use crate::{
    ERROR_DOMAIN,
    domain::{
        Cause, ConversationId, CustomerId, Direction, InboxId, Message, MessageId, SenderKind,
        Tenant, Visibility,
        repository::{ChangeSet, Repository as _, RowWrite},
        rules::{self, Action},
    },
    storage::SqlRepository,
};

mod sla;
pub use sla::{SeededSla, SlaPlan, seed_open_under_sla};

/// A customer's history to write.
#[derive(Debug, Clone)]
pub struct HistoryPlan {
    /// Tenant.
    pub tenant: String,
    /// The inbox the messages arrived on (it must exist).
    pub inbox: uuid::Uuid,
    /// The customer (profiles' id; conversations does not check it).
    pub customer: uuid::Uuid,
    /// Messages in all.
    pub messages: u64,
    /// Messages per conversation: one commit each. (One at a time: every
    /// commit of a customer's message takes the customer's mark row, so
    /// commits of one customer never overlap.)
    pub per_conversation: u64,
    /// Cursors wanted: message ids spread evenly over the history (one per
    /// `messages / cursors` of each conversation, from its `page`th on).
    pub cursors: usize,
    /// Every cursor has at least this many older messages in its own
    /// conversation, so that a page of this size before any cursor is full
    /// (keep it below `per_conversation`).
    pub page: u64,
}

/// What [`seed_history`] wrote.
#[derive(Debug, Clone)]
pub struct SeededHistory {
    /// Messages written.
    pub messages: u64,
    /// Conversations written.
    pub conversations: u64,
    /// Ids of messages spread over the history: starting points of pages
    /// ([`history_page_token`]).
    pub cursors: Vec<uuid::Uuid>,
    /// Seconds it took.
    pub elapsed_secs: f64,
}

/// Writes `plan.messages` inbound messages of `plan.customer` on
/// `plan.inbox`, `plan.per_conversation` to a resolved conversation.
pub async fn seed_history(db: &Db, plan: &HistoryPlan) -> anyhow::Result<SeededHistory> {
    anyhow::ensure!(
        plan.per_conversation > 0,
        "per_conversation must be above 0"
    );
    let (tenant, repo, inbox) = open_seed(db, &plan.tenant, plan.inbox).await?;
    let conversations = plan.messages.div_ceil(plan.per_conversation);
    let stride = (plan.messages / plan.cursors.max(1) as u64).max(1);
    let started = Instant::now();
    let mut cursors = Vec::new();
    for c in 0..conversations {
        let first = c * plan.per_conversation;
        let last = (first + plan.per_conversation).min(plan.messages);
        let case_number = repo
            .next_case_number(&tenant)
            .await
            .map_err(|e| anyhow!("taking a case number: {e:?}"))?;
        let now = Utc::now();
        let id = ConversationId::generate();
        let customer = CustomerId(plan.customer);
        let subject = format!("Order {c}: a question");
        let mut conversation =
            rules::inbound_conversation(&inbox, (id, case_number), customer, &subject, None, now);
        let mut change = ChangeSet::new(&tenant, now);
        for p in first..last {
            let message = Message {
                id: MessageId::generate(),
                conversation: id,
                inbox: inbox.id,
                customer,
                direction: Direction::Inbound,
                sender_kind: SenderKind::Customer,
                agent: None,
                visibility: Visibility::Public,
                channel: inbox.channel,
                subject: subject.clone(),
                text: format!(
                    "Hello, this is message {p} about order {c}. The parcel has not arrived \
                     yet and the tracking page shows no update since Monday. Could you look \
                     into it? Thank you."
                ),
                html: String::new(),
                attachments: Vec::new(),
                external_id: Some(format!("<seed-{}-{p}@history.example.com>", plan.customer)),
                in_reply_to: String::new(),
                send_time: now,
                create_time: now,
                purpose: None,
                delivery: None,
                call: None,
            };
            if p - first >= plan.page && (p - first - plan.page).is_multiple_of(stride) {
                cursors.push(message.id.0);
            }
            rules::add_customer_message(&mut conversation, &message);
            change.messages.push(message);
        }
        let resolve = Action::Resolve {
            code: "seeded".to_owned(),
            summary: String::new(),
            by: None,
            auto: true,
        };
        let (resolved, _) = rules::transition(&conversation, resolve, Cause::Automation, now)
            .map_err(|e| anyhow!("resolving a seeded conversation: {e:?}"))?;
        change.conversations.push(RowWrite::Insert(resolved));
        repo.commit(change)
            .await
            .map_err(|e| anyhow!("committing conversation {c}: {e:?}"))?;
    }
    Ok(SeededHistory {
        messages: plan.messages,
        conversations,
        cursors,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// The `page_token` of the ListCustomerHistory page of `customer` that starts
/// right before message `before` (newest first), as a conversations service
/// whose `page_token_secret` is `secret` issues it.
pub fn history_page_token(
    secret: &str,
    tenant: &str,
    customer: uuid::Uuid,
    before: uuid::Uuid,
) -> anyhow::Result<String> {
    let tenant = Tenant::parse(tenant).map_err(|e| anyhow!("tenant: {e}"))?;
    let scope = crate::api::handler::history_scope(CustomerId(customer));
    Ok(
        PageTokens::new(secret.as_bytes(), ERROR_DOMAIN).encode(
            &tenant,
            &scope,
            &MessageId(before),
        ),
    )
}

/// A year of metric facts to write (`rapport bench`'s
/// `conversations.metrics`): the rows a year of conversations leaves in
/// `conv_metric_facts`, without the conversations themselves (KPIs read
/// the facts only).
#[derive(Debug, Clone)]
pub struct MetricsPlan {
    /// Tenant.
    pub tenant: String,
    /// The inbox of every fact.
    pub inbox: uuid::Uuid,
    /// Conversations, created evenly over the year.
    pub conversations: u64,
    /// Distinct agents (and a tenth as many teams).
    pub agents: u32,
    /// The year's start.
    pub start: chrono::DateTime<Utc>,
}

/// What [`seed_metric_facts`] wrote.
#[derive(Debug, Clone)]
pub struct SeededMetrics {
    /// Rows written.
    pub facts: u64,
    /// Agents, as `agents/{id}`.
    pub agents: Vec<String>,
    /// Seconds it took.
    pub elapsed_secs: f64,
}

/// splitmix64: a deterministic spread of values without a dependency.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Writes the facts of `plan.conversations` conversations over a year:
/// each created, answered (first response), resolved (with its handle
/// time); a tenth with a next response; one in twenty reopened and
/// resolved again; one in twenty auto-resolved — about 4.4 rows each.
pub async fn seed_metric_facts(db: &Db, plan: &MetricsPlan) -> anyhow::Result<SeededMetrics> {
    use crate::domain::{
        AgentId, Channel, InteractionType, Priority, TeamId, metrics::FactMetric,
        repository::MetricFact,
    };
    anyhow::ensure!(plan.agents > 0, "agents must be above 0");
    let tenant = Tenant::parse(&plan.tenant).map_err(|e| anyhow!("tenant: {e}"))?;
    let agents: Vec<AgentId> = (0..plan.agents)
        .map(|_| AgentId(uuid::Uuid::now_v7()))
        .collect();
    let teams: Vec<TeamId> = (0..plan.agents.div_ceil(10))
        .map(|_| TeamId(uuid::Uuid::now_v7()))
        .collect();
    let channels = [Channel::Email, Channel::LiveChat, Channel::Phone];
    let types = [InteractionType::Information, InteractionType::Complaint];
    let year = 365 * 86_400_i64;
    let n = i64::try_from(plan.conversations.max(1))?;
    let started = Instant::now();
    let mut facts = Vec::new();
    let mut written = 0u64;
    for i in 0..plan.conversations {
        let r = mix(i);
        let pick = |shift: u32, m: u64| ((r >> shift) % m) as usize;
        let created = plan.start + chrono::Duration::seconds(i64::try_from(i)? * year / n);
        let agent = agents[pick(0, agents.len() as u64)];
        let base = MetricFact {
            conversation: ConversationId(uuid::Uuid::from_u64_pair(r, i)),
            metric: FactMetric::Created,
            cycle: 0,
            start: created,
            stop: created,
            calendar_seconds: 0,
            business_seconds: 0,
            met: None,
            target_seconds: None,
            agent: Some(agent),
            team: Some(teams[pick(8, teams.len() as u64)]),
            channel: Some(channels[pick(16, 3)]),
            inbox: InboxId(plan.inbox),
            priority: if pick(20, 4) == 0 {
                Priority::High
            } else {
                Priority::Normal
            },
            interaction_type: Some(types[pick(24, 2)]),
            policy: None,
            auto: None,
            human_agents: None,
            definition_version: crate::domain::sla_clock::DEFINITION_VERSION,
        };
        let measured =
            |metric, cycle, start: chrono::DateTime<Utc>, secs: i64, target: i64| MetricFact {
                metric,
                cycle,
                start,
                stop: start + chrono::Duration::seconds(secs),
                calendar_seconds: secs,
                business_seconds: secs * 2 / 5,
                met: Some(secs <= target),
                target_seconds: Some(target),
                ..base.clone()
            };
        facts.push(base.clone());
        let first = 30 + (mix(r) % 14_400) as i64;
        facts.push(measured(FactMetric::FirstResponse, 0, created, first, 3600));
        let resolve = first + (mix(r ^ 1) % 172_800) as i64;
        let auto = pick(28, 20) == 0;
        facts.push(MetricFact {
            auto: Some(auto),
            human_agents: Some(if pick(32, 5) == 0 { 2 } else { 1 }),
            ..measured(FactMetric::Resolution, 0, created, resolve, 86_400)
        });
        let mut handle = measured(
            FactMetric::Handle,
            0,
            created,
            resolve.min(900 + first / 4),
            0,
        );
        handle.met = None;
        handle.target_seconds = None;
        handle.stop = created + chrono::Duration::seconds(resolve);
        facts.push(handle);
        if pick(36, 10) == 0 {
            facts.push(measured(
                FactMetric::NextResponse,
                0,
                created + chrono::Duration::seconds(first),
                (mix(r ^ 2) % 3600) as i64,
                1800,
            ));
        }
        if !auto && pick(40, 20) == 0 {
            let reopen = created + chrono::Duration::seconds(resolve + 3600);
            facts.push(measured(FactMetric::Reopen, 1, reopen, 0, 0));
            facts.push(measured(FactMetric::Resolution, 1, reopen, 7200, 86_400));
        }
        // A month's facts per write, so its rollup rows are written once
        // (the months are in order), not added to batch after batch.
        let next = plan.start + chrono::Duration::seconds(i64::try_from(i + 1)? * year / n);
        if next.month() != created.month() || facts.len() >= 1_000_000 {
            crate::storage::metrics::insert_facts(db, &tenant, &facts)
                .await
                .context("writing metric facts")?;
            written += facts.len() as u64;
            facts.clear();
        }
    }
    crate::storage::metrics::insert_facts(db, &tenant, &facts)
        .await
        .context("writing metric facts")?;
    written += facts.len() as u64;
    crate::storage::metrics::settle_facts(db)
        .await
        .context("refreshing statistics")?;
    Ok(SeededMetrics {
        facts: written,
        agents: agents.iter().map(|a| format!("agents/{a}")).collect(),
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// The tenant, a repository writing without waking a relay (a seed's
/// changes raise no events), and the inbox `inbox` of the tenant.
async fn open_seed(
    db: &Db,
    tenant: &str,
    inbox: uuid::Uuid,
) -> anyhow::Result<(Tenant, SqlRepository, crate::domain::Inbox)> {
    let tenant = Tenant::parse(tenant).map_err(|e| anyhow!("tenant: {e}"))?;
    let repo = SqlRepository::new(
        db.clone(),
        crate::api::events::encode,
        rapport_events::relay::Wake::default(),
    );
    let inbox = repo
        .inbox(&tenant, InboxId(inbox))
        .await
        .map_err(|e| anyhow!("reading the inbox: {e:?}"))?
        .with_context(|| format!("inbox {inbox} of tenant {tenant} not found"))?;
    Ok((tenant, repo, inbox))
}
