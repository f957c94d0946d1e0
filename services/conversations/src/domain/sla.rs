//! SLA policies: which policy applies to a conversation and what it
//! promises. Pure: the selection and the pinned copy a conversation keeps.
//!
//! - Policies are ordered by `position` (then id). The first whose
//!   condition matches wins. A policy with no condition is the fallback: it
//!   is considered only after every conditional policy, wherever it sits, so
//!   a catch-all can never shadow a specific policy (the Zammad ordering by
//!   name is a trap peers.md §(c) records).
//! - A condition is AND across its fields and OR within one; an empty field
//!   matches anything. Customer tags match when the customer has any of them.
//! - Targets are per priority, per metric (first response, next response,
//!   periodic update, resolution), each in calendar time or in business time
//!   on a named calendar, in seconds with no cap.
//! - Applying pins a copy of the policy at its revision ([`AppliedSla`]):
//!   editing the policy later never rewrites an open conversation, and a
//!   priority change recomputes due times from the pinned copy.
use chrono::{DateTime, Utc};
use rapport_usecase::{Violations, uuid_id};
use serde::{Deserialize, Serialize};

use super::{
    calendars::CalendarId,
    model::{Channel, InboxId, InteractionType, Priority, State},
    rules,
};

uuid_id!(
    /// Id of an SLA policy (`slaPolicies/{id}`).
    SlaPolicyId
);

/// Most values in one condition field.
pub const MAX_CONDITION_VALUES: usize = 50;

/// What a conversation must be for a policy to apply. Empty: the fallback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaCondition {
    /// Any of these channels.
    pub channels: Vec<Channel>,
    /// Any of these inboxes.
    pub inboxes: Vec<InboxId>,
    /// Any of these priorities.
    pub priorities: Vec<Priority>,
    /// Any of these interaction types (an unclassified conversation matches
    /// none).
    pub interaction_types: Vec<InteractionType>,
    /// A customer with any of these tags (lower-case).
    pub customer_tags: Vec<String>,
}

impl SlaCondition {
    /// No field set: the fallback.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
            && self.inboxes.is_empty()
            && self.priorities.is_empty()
            && self.interaction_types.is_empty()
            && self.customer_tags.is_empty()
    }

    /// Whether `s` satisfies every field set.
    pub fn matches(&self, s: &SlaSubject<'_>) -> bool {
        fn any<T: PartialEq>(set: &[T], value: &T) -> bool {
            set.is_empty() || set.contains(value)
        }
        any(&self.channels, &s.channel)
            && any(&self.inboxes, &s.inbox)
            && any(&self.priorities, &s.priority)
            && (self.interaction_types.is_empty()
                || s.interaction_type
                    .is_some_and(|t| self.interaction_types.contains(&t)))
            && (self.customer_tags.is_empty()
                || s.customer_tags
                    .iter()
                    .any(|t| self.customer_tags.iter().any(|c| c.eq_ignore_ascii_case(t))))
    }
}

/// What the selection looks at of a conversation.
#[derive(Debug, Clone, Copy)]
pub struct SlaSubject<'a> {
    /// The conversation's channel (its inbox's).
    pub channel: Channel,
    /// Its inbox.
    pub inbox: InboxId,
    /// Its priority.
    pub priority: Priority,
    /// Its interaction type, if classified.
    pub interaction_type: Option<InteractionType>,
    /// Its customer's tags.
    pub customer_tags: &'a [String],
}

/// How a target's time is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeBasis {
    /// Every second counts (24/7).
    CalendarTime,
    /// Only working time of this business calendar counts.
    BusinessTime(CalendarId),
}

/// One target: seconds on a basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Seconds, at least 1, no upper cap.
    pub seconds: u64,
    /// How they are counted.
    pub basis: TimeBasis,
}

/// The metrics an SLA measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    /// Start to the first public reply of a human agent.
    FirstResponse,
    /// Oldest unanswered customer message to the next such reply.
    NextResponse,
    /// Between public updates to the customer while open.
    PeriodicUpdate,
    /// Start to resolution.
    Resolution,
}

/// The targets of one priority; a metric without a target is not measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityTargets {
    /// The priority.
    pub priority: Priority,
    /// First response.
    pub first_response: Option<Target>,
    /// Next response.
    pub next_response: Option<Target>,
    /// Periodic update.
    pub periodic_update: Option<Target>,
    /// Resolution.
    pub resolution: Option<Target>,
}

impl PriorityTargets {
    /// The target of `metric`, if any.
    pub fn target(&self, metric: Metric) -> Option<Target> {
        match metric {
            Metric::FirstResponse => self.first_response,
            Metric::NextResponse => self.next_response,
            Metric::PeriodicUpdate => self.periodic_update,
            Metric::Resolution => self.resolution,
        }
    }

    fn all(&self) -> [(Metric, &'static str, Option<Target>); 4] {
        [
            (Metric::FirstResponse, "first_response", self.first_response),
            (Metric::NextResponse, "next_response", self.next_response),
            (
                Metric::PeriodicUpdate,
                "periodic_update",
                self.periodic_update,
            ),
            (Metric::Resolution, "resolution", self.resolution),
        ]
    }
}

/// What a breach does: raise the priority (never lowers it), move the
/// conversation to a team; applied through the one transition function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// At least this priority.
    pub raise_priority_to: Option<Priority>,
    /// To this team.
    pub move_to_team: Option<super::model::TeamId>,
}

/// An SLA policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaPolicy {
    /// Id.
    pub id: SlaPolicyId,
    /// Name shown to admins.
    pub display_name: String,
    /// Order of evaluation, lowest first.
    pub position: i64,
    /// When it applies; empty: the fallback.
    pub condition: SlaCondition,
    /// Targets per priority (at most one entry per priority).
    pub targets: Vec<PriorityTargets>,
    /// Clocks stop while PENDING.
    pub pause_when_pending: bool,
    /// Clocks stop while SNOOZED.
    pub pause_when_snoozed: bool,
    /// Warn at this percentage of a target (1–99); 0: no warning.
    pub warn_at_percent: u8,
    /// What a breach does to the conversation; absent from policies stored
    /// before it.
    #[serde(default)]
    pub escalation: Option<Escalation>,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// The revision: bumped by every change, pinned by every application.
    pub version: i64,
}

impl SlaPolicy {
    /// The targets for `priority`, if the policy has any.
    pub fn targets_for(&self, priority: Priority) -> Option<&PriorityTargets> {
        self.targets.iter().find(|t| t.priority == priority)
    }

    /// Whether the clocks stop in `state`. Resolved and closed
    /// conversations have no running clocks at all.
    pub fn pauses_in(&self, state: State) -> bool {
        match state {
            State::Pending => self.pause_when_pending,
            State::Snoozed => self.pause_when_snoozed,
            State::Open | State::Resolved | State::Closed => false,
        }
    }

    /// The copy a conversation keeps when the policy is applied at `now`.
    pub fn pin(&self, now: DateTime<Utc>) -> AppliedSla {
        AppliedSla {
            policy: self.id,
            revision: self.version,
            applied_time: now,
            policy_at_revision: self.clone(),
        }
    }

    /// Reports each bad field under `prefix`.
    pub fn check(&self, prefix: &str, v: &mut Violations) {
        let name = self.display_name.trim();
        if name.is_empty() || name.chars().count() > rules::MAX_NAME {
            v.add(
                format!("{prefix}.display_name"),
                "is required, at most 200 characters",
            );
        }
        if self.warn_at_percent >= 100 {
            v.add(
                format!("{prefix}.warn_at_percent"),
                "must be 1 to 99 (or 0: no warning)",
            );
        }
        let c = &self.condition;
        for (field, len) in [
            ("channels", c.channels.len()),
            ("inboxes", c.inboxes.len()),
            ("priorities", c.priorities.len()),
            ("interaction_types", c.interaction_types.len()),
            ("customer_tags", c.customer_tags.len()),
        ] {
            if len > MAX_CONDITION_VALUES {
                v.add(
                    format!("{prefix}.condition.{field}"),
                    format!("holds at most {MAX_CONDITION_VALUES} values"),
                );
            }
        }
        for (i, tag) in c.customer_tags.iter().enumerate() {
            if tag.trim().is_empty() || tag.chars().count() > 100 {
                v.add(
                    format!("{prefix}.condition.customer_tags[{i}]"),
                    "is required, at most 100 characters",
                );
            }
        }
        if self.targets.is_empty() {
            v.add(
                format!("{prefix}.targets"),
                "needs at least one priority's targets",
            );
        }
        // An escalated conversation keeps this policy (its pinned copy):
        // raised to a priority it has no targets for, it would stop being
        // measured, breaches shown so far included.
        if let Some(p) = self.escalation.and_then(|e| e.raise_priority_to)
            && self.targets_for(p).is_none()
        {
            v.add(
                format!("{prefix}.escalation.raise_priority_to"),
                "the policy has no targets for this priority: an escalated conversation keeps \
                 this policy and would no longer be measured",
            );
        }
        for (i, t) in self.targets.iter().enumerate() {
            let at = format!("{prefix}.targets[{i}]");
            if self.targets[..i].iter().any(|o| o.priority == t.priority) {
                v.add(format!("{at}.priority"), "repeats another entry's priority");
            }
            let all = t.all();
            if all.iter().all(|(_, _, target)| target.is_none()) {
                v.add(at.clone(), "needs at least one metric's target");
            }
            for (_, field, target) in all {
                if target.is_some_and(|t| t.seconds == 0) {
                    v.add(format!("{at}.{field}"), "must be at least one second");
                }
            }
        }
    }
}

impl super::managed::Managed for SlaPolicy {
    const KIND: super::error::Kind = super::error::Kind::SlaPolicy;
    const FIELD: &'static str = "sla_policy";
    fn id(&self) -> uuid::Uuid {
        self.id.0
    }
    fn key(&self) -> String {
        self.display_name.trim().to_lowercase()
    }
    fn key_field() -> &'static str {
        "display_name"
    }
    fn version(&self) -> i64 {
        self.version
    }
    fn times(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.create_time, self.update_time)
    }
    fn stamp(
        &mut self,
        id: Option<uuid::Uuid>,
        version: i64,
        create: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        if let Some(id) = id {
            self.id = SlaPolicyId(id);
        }
        self.display_name = self.display_name.trim().to_owned();
        let c = &mut self.condition;
        for tag in &mut c.customer_tags {
            *tag = tag.trim().to_lowercase();
        }
        c.customer_tags.sort();
        c.customer_tags.dedup();
        c.inboxes.sort();
        c.inboxes.dedup();
        (self.version, self.create_time, self.update_time) = (version, create, now);
    }
    fn check(&self, prefix: &str, v: &mut Violations) {
        SlaPolicy::check(self, prefix, v);
    }
    fn name(&self) -> String {
        format!("slaPolicies/{}", self.id)
    }
    fn teams(&self) -> Vec<(String, super::model::TeamId)> {
        self.escalation
            .and_then(|e| e.move_to_team)
            .map(|t| ("escalation.move_to_team".to_owned(), t))
            .into_iter()
            .collect()
    }
    fn calendars(&self) -> Vec<(String, uuid::Uuid)> {
        let mut out = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            for (_, field, target) in t.all() {
                if let Some(Target {
                    basis: TimeBasis::BusinessTime(calendar),
                    ..
                }) = target
                {
                    out.push((
                        format!("targets[{i}].{field}.business_calendar"),
                        calendar.0,
                    ));
                }
            }
        }
        out
    }
}

/// An SLA as applied to a conversation: the policy as it was at `revision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedSla {
    /// The policy.
    pub policy: SlaPolicyId,
    /// Its revision when applied.
    pub revision: i64,
    /// When it was applied.
    pub applied_time: DateTime<Utc>,
    /// The whole policy at that revision (every priority's targets, so a
    /// priority change needs no read of the current policy).
    pub policy_at_revision: SlaPolicy,
}

/// The policy that applies to `subject`: the first conditional policy by
/// position (then id) that matches, else the first fallback; `None` when no
/// policy applies or the one that does has no targets for the priority
/// (then nothing is measured).
pub fn select<'a>(policies: &'a [SlaPolicy], subject: &SlaSubject<'_>) -> Option<&'a SlaPolicy> {
    let mut ordered: Vec<&SlaPolicy> = policies.iter().collect();
    ordered.sort_by_key(|p| (p.condition.is_empty(), p.position, p.id));
    ordered
        .into_iter()
        .find(|p| p.condition.matches(subject))
        .filter(|p| p.targets_for(subject.priority).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

    fn target(seconds: u64) -> Option<Target> {
        Some(Target {
            seconds,
            basis: TimeBasis::CalendarTime,
        })
    }

    fn policy(name: &str, position: i64, condition: SlaCondition) -> SlaPolicy {
        SlaPolicy {
            id: SlaPolicyId::generate(),
            display_name: name.into(),
            position,
            condition,
            targets: [
                Priority::Low,
                Priority::Normal,
                Priority::High,
                Priority::Urgent,
            ]
            .into_iter()
            .map(|priority| PriorityTargets {
                priority,
                first_response: target(3600),
                next_response: None,
                periodic_update: None,
                resolution: target(86_400),
            })
            .collect(),
            pause_when_pending: true,
            pause_when_snoozed: false,
            warn_at_percent: 80,
            escalation: None,
            create_time: EPOCH,
            update_time: EPOCH,
            version: 1,
        }
    }

    fn subject<'a>(inbox: InboxId, tags: &'a [String]) -> SlaSubject<'a> {
        SlaSubject {
            channel: Channel::Email,
            inbox,
            priority: Priority::Normal,
            interaction_type: None,
            customer_tags: tags,
        }
    }

    #[test]
    fn first_match_by_position_wins_and_the_fallback_comes_last() {
        let inbox = InboxId::generate();
        let none: Vec<String> = vec![];
        let vip = vec!["VIP".to_owned()];
        let fallback = policy("Everyone", 0, SlaCondition::default());
        let email = policy(
            "Email",
            2,
            SlaCondition {
                channels: vec![Channel::Email],
                ..Default::default()
            },
        );
        let vips = policy(
            "VIP",
            1,
            SlaCondition {
                customer_tags: vec!["vip".into()],
                ..Default::default()
            },
        );
        let policies = vec![fallback.clone(), email.clone(), vips.clone()];
        let name = |s: &SlaSubject<'_>| select(&policies, s).map(|p| p.display_name.clone());
        // The fallback at position 0 does not shadow the others.
        assert_eq!(name(&subject(inbox, &vip)).as_deref(), Some("VIP"));
        assert_eq!(name(&subject(inbox, &none)).as_deref(), Some("Email"));
        let chat = SlaSubject {
            channel: Channel::LiveChat,
            ..subject(inbox, &none)
        };
        assert_eq!(name(&chat).as_deref(), Some("Everyone"));
        // Without a fallback nothing applies.
        assert!(select(&[email, vips], &chat).is_none());
    }

    #[test]
    fn a_condition_is_and_across_fields_and_or_within_one() {
        let (a, b) = (InboxId::generate(), InboxId::generate());
        let none: Vec<String> = vec![];
        let c = SlaCondition {
            inboxes: vec![a, b],
            priorities: vec![Priority::High, Priority::Urgent],
            interaction_types: vec![InteractionType::Complaint],
            ..Default::default()
        };
        let s = SlaSubject {
            priority: Priority::Urgent,
            interaction_type: Some(InteractionType::Complaint),
            ..subject(b, &none)
        };
        assert!(c.matches(&s));
        assert!(!c.matches(&SlaSubject {
            priority: Priority::Normal,
            ..s
        }));
        assert!(!c.matches(&SlaSubject {
            interaction_type: None,
            ..s
        }));
        assert!(!c.matches(&SlaSubject {
            inbox: InboxId::generate(),
            ..s
        }));
    }

    #[test]
    fn equal_positions_are_ordered_by_id_and_missing_priority_targets_measure_nothing() {
        let none: Vec<String> = vec![];
        let inbox = InboxId::generate();
        let mut first = policy("first", 5, SlaCondition::default());
        let mut second = policy("second", 5, SlaCondition::default());
        if second.id < first.id {
            std::mem::swap(&mut first.id, &mut second.id);
        }
        let policies = [second.clone(), first.clone()];
        assert_eq!(
            select(&policies, &subject(inbox, &none))
                .unwrap()
                .display_name,
            "first"
        );
        let mut low_only = policy("low", 0, SlaCondition::default());
        low_only.targets.retain(|t| t.priority == Priority::Low);
        assert!(select(&[low_only], &subject(inbox, &none)).is_none());
    }

    #[test]
    fn pinning_keeps_the_revision_whatever_the_policy_becomes() {
        let mut p = policy("p", 0, SlaCondition::default());
        p.version = 3;
        let applied = p.pin(EPOCH);
        p.targets[1].first_response = target(60);
        p.version = 4;
        assert_eq!(applied.revision, 3);
        let pinned = applied
            .policy_at_revision
            .targets_for(Priority::Normal)
            .unwrap();
        assert_eq!(pinned.target(Metric::FirstResponse), target(3600));
        // A later priority change reads the other priorities from the copy.
        let urgent = applied
            .policy_at_revision
            .targets_for(Priority::Urgent)
            .unwrap();
        assert_eq!(urgent.target(Metric::Resolution), target(86_400));
        assert!(p.pauses_in(State::Pending) && !p.pauses_in(State::Snoozed));
        assert!(!p.pauses_in(State::Open));
    }

    #[test]
    fn bad_policies_name_every_bad_field() {
        let mut p = policy("", 0, SlaCondition::default());
        p.warn_at_percent = 100;
        p.condition.customer_tags = vec![" ".into()];
        p.targets[1].priority = Priority::Low;
        p.targets[2].first_response = target(0);
        p.targets[3] = PriorityTargets {
            priority: Priority::Urgent,
            first_response: None,
            next_response: None,
            periodic_update: None,
            resolution: None,
        };
        let mut v = Violations::default();
        p.check("sla_policy", &mut v);
        let fields: Vec<&str> = v.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "sla_policy.display_name",
                "sla_policy.warn_at_percent",
                "sla_policy.condition.customer_tags[0]",
                "sla_policy.targets[1].priority",
                "sla_policy.targets[2].first_response",
                "sla_policy.targets[3]",
            ]
        );
        let mut ok = Violations::default();
        policy("fine", 0, SlaCondition::default()).check("sla_policy", &mut ok);
        assert!(ok.is_empty(), "{ok:?}");
    }
}
