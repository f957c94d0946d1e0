//! Bulk loading of open conversations under a live SLA, for `rapport
//! bench`'s `conversations.sla-breach`: 100,000 conversations through
//! ReceiveMessage would take longer than the breaches the bench waits for,
//! and could not start a clock in the past.
//!
//! Each conversation is what ReceiveMessage leaves for a new sender's first
//! email: built by the same rules (`rules::inbound_conversation`, the
//! customer's message, the clocks' `Created`), under the policy
//! `sla::select` picks from the tenant's policies, pinned at its arrival,
//! with the warning and breach timers `sla_apply::effects` derives — real
//! `conversations.sla` rows the service's worker fires. Committed by the
//! repository, many conversations per change, without the outbox events
//! (nobody consumes a seed). It bypasses the use-case on purpose and must
//! not be used to write anything a client sent.
use std::time::Instant;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use rapport_store::Db;

use super::open_seed;

use crate::domain::{
    ConversationId, CustomerId, Direction, Message, MessageId, SenderKind, Visibility,
    repository::{ChangeSet, Repository as _, RowWrite, ThreadWrite},
    rules,
    sla::{self, SlaPolicy, SlaSubject, TimeBasis},
    sla_apply::{Hours, effects},
    sla_clock::ClockEvent,
};

/// Open conversations to write, one new customer each.
#[derive(Debug, Clone)]
pub struct SlaPlan {
    /// Tenant.
    pub tenant: String,
    /// The inbox the first messages arrived on (it must exist, without a
    /// business calendar).
    pub inbox: uuid::Uuid,
    /// When each conversation's first message arrived: its clocks start
    /// then (one conversation per entry).
    pub arrivals: Vec<DateTime<Utc>>,
    /// Conversations per commit.
    pub per_commit: usize,
}

/// What [`seed_open_under_sla`] wrote.
#[derive(Debug, Clone)]
pub struct SeededSla {
    /// Conversations written.
    pub conversations: u64,
    /// SLA timers scheduled (warnings and breaches).
    pub timers: u64,
    /// The earliest breach due time.
    pub first_due: Option<DateTime<Utc>>,
    /// Seconds it took.
    pub elapsed_secs: f64,
}

/// Writes one open conversation per `plan.arrivals`, each under the SLA the
/// tenant's policies select for it. The selected policies must count in
/// calendar time (the seed reads no calendars).
pub async fn seed_open_under_sla(db: &Db, plan: &SlaPlan) -> anyhow::Result<SeededSla> {
    anyhow::ensure!(plan.per_commit > 0, "per_commit must be above 0");
    let (tenant, repo, inbox) = open_seed(db, &plan.tenant, plan.inbox).await?;
    anyhow::ensure!(
        inbox.business_calendar.is_empty(),
        "the seed reads no calendars: use an inbox without a business calendar"
    );
    let policies: Vec<SlaPolicy> = repo
        .managed_list(&tenant, None, 500)
        .await
        .map_err(|e| anyhow!("reading the SLA policies: {e:?}"))?;
    // Calendar time only, and no inbox calendar: the hours are empty.
    let hours = Hours::default();
    let started = Instant::now();
    let (mut conversations, mut timers, mut first_due) = (0, 0, None::<DateTime<Utc>>);
    for chunk in plan.arrivals.chunks(plan.per_commit) {
        let mut change = ChangeSet::new(&tenant, Utc::now());
        for &arrival in chunk {
            let case_number = repo
                .next_case_number(&tenant)
                .await
                .map_err(|e| anyhow!("taking a case number: {e:?}"))?;
            let id = ConversationId::generate();
            let customer = CustomerId(uuid::Uuid::now_v7());
            let subject = format!("Case {case_number}: where is my order?");
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
                text: "Hello, my parcel has not arrived and the tracking page shows no \
                       update since Monday. Could you look into it?"
                    .to_owned(),
                html: String::new(),
                attachments: Vec::new(),
                external_id: Some(format!("<seed-sla-{}@customers.example.com>", id.0)),
                in_reply_to: String::new(),
                send_time: arrival,
                create_time: arrival,
                purpose: None,
                delivery: None,
                call: None,
            };
            let mut c = rules::inbound_conversation(
                &inbox,
                (id, case_number),
                customer,
                &subject,
                None,
                arrival,
            );
            rules::add_customer_message(&mut c, &message);
            c.sla.apply(
                ClockEvent::Created {
                    customer_waiting: true,
                },
                arrival,
            );
            let subject = SlaSubject {
                channel: message.channel,
                inbox: c.inbox,
                priority: c.priority,
                interaction_type: c.interaction_type,
                customer_tags: &[],
            };
            c.applied_sla = sla::select(&policies, &subject).map(|p| p.pin(arrival));
            if let Some(applied) = &c.applied_sla {
                anyhow::ensure!(
                    applied.policy_at_revision.targets.iter().all(|t| {
                        [
                            t.first_response,
                            t.next_response,
                            t.periodic_update,
                            t.resolution,
                        ]
                        .iter()
                        .flatten()
                        .all(|target| target.basis == TimeBasis::CalendarTime)
                    }),
                    "policy {} counts business time: the seed reads no calendars",
                    applied.policy.0
                );
            }
            let (sla_timers, _) = effects(None, &c, &hours, change.occur_time);
            for t in &sla_timers {
                if t.alert == crate::domain::repository::Alert::Breach
                    && let Some(due) = t.due
                {
                    first_due = Some(first_due.map_or(due, |f| f.min(due)));
                }
            }
            timers += sla_timers.len() as u64;
            change.sla_timers.extend(sla_timers);
            change.threads.push(ThreadWrite::Start {
                inbox: inbox.id,
                customer,
                conversation: id,
            });
            change.messages.push(message);
            change.conversations.push(RowWrite::Insert(c));
            conversations += 1;
        }
        repo.commit(change)
            .await
            .map_err(|e| anyhow!("committing conversations: {e:?}"))?;
    }
    Ok(SeededSla {
        conversations,
        timers,
        first_due,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}
