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
use chrono::Utc;
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
