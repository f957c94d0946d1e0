//! Applying SLAs to conversations: selecting and pinning a policy (on
//! create, on reopen, when the priority leaves the pinned policy's targets
//! or the inbox changes), the calendars a conversation's clocks count on,
//! its per-metric status, and — for every committed change — the durable
//! warning and breach timers to (re)schedule and the metric facts of the
//! clocks that stopped. Pure functions, plus the use-case side that reads
//! policies and calendars.
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rapport_usecase::Clock;

use super::{
    calendar::BusinessCalendar,
    calendars::{Calendar, CalendarId},
    error::Error,
    model::*,
    ports::Customers,
    repository::*,
    service::Conversations,
    sla::{self, AppliedSla, Metric, SlaPolicy, SlaSubject, Target, TimeBasis},
    sla_clock::{self, Evaluation, MetricClock, Status, StopCause},
};

/// Conversations read per page when a calendar change moves timers.
const RESCHEDULE_PAGE: u32 = 200;

/// The calendars a conversation's clocks count on: its SLA's targets' and
/// its inbox's (business seconds of metrics without a business target).
#[derive(Debug, Clone, Default)]
pub struct Hours {
    /// By id.
    pub calendars: HashMap<CalendarId, BusinessCalendar>,
    /// The inbox's calendar.
    pub inbox: Option<BusinessCalendar>,
}

impl Hours {
    /// The calendar `target` counts on; `None`: calendar time (also for a
    /// calendar deleted since the policy was pinned).
    pub fn of(&self, target: Target) -> Option<&BusinessCalendar> {
        match target.basis {
            TimeBasis::CalendarTime => None,
            TimeBasis::BusinessTime(id) => self.calendars.get(&id),
        }
    }
}

/// The pinned policy and the target of `metric` at `c`'s priority.
fn target_of(c: &Conversation, metric: Metric) -> Option<(&SlaPolicy, Target)> {
    let policy = &c.applied_sla.as_ref()?.policy_at_revision;
    let target = policy.targets_for(c.priority)?.target(metric)?;
    Some((policy, target))
}

/// Every measured clock of `c` against its target at `now`. A target in
/// calendar time still warns only within the inbox's hours, when the inbox
/// has a calendar (Zammad #4432: reminders at midnight); a warning that
/// would come at or after the due time is none.
pub fn evaluations(c: &Conversation, hours: &Hours, now: DateTime<Utc>) -> Vec<Evaluation> {
    c.sla
        .clocks
        .iter()
        .filter_map(|clock| {
            let (policy, target) = target_of(c, clock.metric)?;
            let mut e = sla_clock::evaluate(clock, target, hours.of(target), policy, now);
            if target.basis == TimeBasis::CalendarTime
                && let Some(inbox) = &hours.inbox
            {
                e.warn_at = e.warn_at.and_then(|w| inbox.next_opening(w).ok());
            }
            if let (Some(w), Some(due)) = (e.warn_at, e.due)
                && w >= due
            {
                e.warn_at = None;
            }
            Some(e)
        })
        .collect()
}

/// The timer writes that take the alerts of `before` (as evaluated on
/// `hours_before`) to those of `after`, and the metric facts of the clocks
/// that stopped between them.
pub fn effects(
    before: Option<(&Conversation, &Hours)>,
    after: &Conversation,
    hours: &Hours,
    now: DateTime<Utc>,
) -> (Vec<SlaTimer>, Vec<MetricFact>) {
    let alerts = |c: &Conversation, h: &Hours| -> HashMap<(Metric, u32, Alert), DateTime<Utc>> {
        let mut out = HashMap::new();
        for e in evaluations(c, h, now) {
            let running = c
                .sla
                .get(e.metric)
                .is_some_and(|k| k.cycle == e.cycle && k.running());
            if !running {
                continue;
            }
            if let Some(due) = e.due {
                out.insert((e.metric, e.cycle, Alert::Breach), due);
                if let Some(w) = e.warn_at.filter(|w| *w < due) {
                    out.insert((e.metric, e.cycle, Alert::Warning), w);
                }
            }
        }
        out
    };
    let old = before.map(|(c, h)| alerts(c, h)).unwrap_or_default();
    let new = alerts(after, hours);
    let mut timers = Vec::new();
    for (&(metric, cycle, alert), &due) in &new {
        if old.get(&(metric, cycle, alert)) != Some(&due) {
            timers.push(SlaTimer {
                conversation: after.id,
                metric,
                cycle,
                alert,
                due: Some(due),
            });
        }
    }
    let stopped_breached = |metric: Metric, cycle: u32| {
        evaluations(after, hours, now)
            .iter()
            .any(|e| e.metric == metric && e.cycle == cycle && e.status == Status::Breached)
    };
    for &(metric, cycle, alert) in old.keys() {
        // A clock that stopped late keeps its breach timer: the breach
        // happened and is raised (once) when it fires.
        let keep = alert == Alert::Breach && stopped_breached(metric, cycle);
        if !new.contains_key(&(metric, cycle, alert)) && !keep {
            timers.push(SlaTimer {
                conversation: after.id,
                metric,
                cycle,
                alert,
                due: None,
            });
        }
    }
    timers.sort_by_key(|t| (t.metric as u8, t.cycle, t.alert == Alert::Breach));
    let mut facts = Vec::new();
    if let Some((b, _)) = before {
        for old in b.sla.clocks.iter().filter(|k| k.running()) {
            let stopped = match after.sla.get(old.metric) {
                Some(k) if k.cycle == old.cycle && !k.running() => k.clone(),
                Some(k) if k.cycle > old.cycle => {
                    let mut s = old.clone();
                    if let Some(p) = s.pauses.last_mut()
                        && p.to.is_none()
                    {
                        p.to = Some(k.start);
                    }
                    s.stop = Some((k.start, StopCause::Reply));
                    s
                }
                _ => continue,
            };
            facts.push(fact(after, &stopped, hours));
            if stopped.metric == Metric::Resolution {
                facts.push(super::metrics::handle_fact(after, &stopped));
            }
        }
    }
    (timers, facts)
}

/// Adds to `change` what every committed change `before` → `after` of a
/// conversation brings besides its row: SLA timers and metric facts (the
/// KPIs' too). For the storage-side timers (escalation, auto-resolve) that
/// have the calendars at hand; the use-cases go through `sla_effects`.
pub fn add_effects(
    change: &mut ChangeSet,
    before: &Conversation,
    after: &Conversation,
    hours: &Hours,
) {
    change
        .metric_facts
        .extend(super::metrics::lifecycle_facts(Some(before), after));
    let (timers, facts) = effects(Some((before, hours)), after, hours, change.occur_time);
    change.sla_timers.extend(timers);
    change.metric_facts.extend(facts);
}

/// What a firing SLA timer does, decided on the conversation as it is now
/// (so a target met meanwhile never breaches, and a due time a calendar
/// edit moved is honoured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertDecision {
    /// Raise it: the event (once: the caller claims the business key).
    Raise(SlaAlertRaised),
    /// Not yet: fire again then.
    Later(DateTime<Utc>),
    /// Never (met, paused, another cycle, no SLA): the clock's next change
    /// schedules what is due.
    Drop,
}

/// The decision for the `alert` timer of `metric`'s `cycle` of `c` at `now`.
pub fn decide(
    c: &Conversation,
    hours: &Hours,
    metric: Metric,
    cycle: u32,
    alert: Alert,
    now: DateTime<Utc>,
) -> AlertDecision {
    let Some(applied) = &c.applied_sla else {
        return AlertDecision::Drop;
    };
    let Some(clock) = c.sla.get(metric).filter(|k| k.cycle == cycle) else {
        return AlertDecision::Drop;
    };
    let Some(e) = evaluations(c, hours, now)
        .into_iter()
        .find(|e| e.metric == metric)
    else {
        return AlertDecision::Drop;
    };
    let raised = |due: DateTime<Utc>| SlaAlertRaised {
        conversation: c.id,
        metric,
        cycle,
        due,
        policy: applied.policy,
        revision: applied.revision,
    };
    match (alert, e.status, e.due) {
        (Alert::Breach, Status::Breached, Some(due)) => AlertDecision::Raise(raised(due)),
        (Alert::Breach, Status::Running, Some(due)) => AlertDecision::Later(due),
        (Alert::Warning, Status::Running, Some(due)) if clock.running() => match e.warn_at {
            Some(w) if w <= now => AlertDecision::Raise(raised(due)),
            Some(w) => AlertDecision::Later(w),
            None => AlertDecision::Drop,
        },
        _ => AlertDecision::Drop,
    }
}

/// The metric fact of `clock`, stopped, of `c`.
pub fn fact(c: &Conversation, clock: &MetricClock, hours: &Hours) -> MetricFact {
    let stop = clock.stop.map_or(clock.start, |(t, _)| t);
    let target = target_of(c, clock.metric);
    let calendar = target
        .and_then(|(_, t)| hours.of(t))
        .or(hours.inbox.as_ref());
    // The applied policy says what pauses (for its unmeasured metrics
    // too); without one, waiting on the customer or snoozed never counts.
    let policy = c.applied_sla.as_ref().map(|a| &a.policy_at_revision);
    let pauses = |s: State| {
        policy.map_or(matches!(s, State::Pending | State::Snoozed), |p| {
            p.pauses_in(s)
        })
    };
    let (calendar_seconds, business_seconds) = sla_clock::elapsed(clock, stop, calendar, &pauses);
    let met = target.map(|(p, t)| {
        sla_clock::evaluate(clock, t, hours.of(t), p, stop).status != Status::Breached
    });
    let resolution = clock.metric == Metric::Resolution;
    MetricFact {
        conversation: c.id,
        metric: clock.metric.into(),
        cycle: clock.cycle,
        start: clock.start,
        stop,
        calendar_seconds: i64::try_from(calendar_seconds).unwrap_or(i64::MAX),
        business_seconds: i64::try_from(business_seconds).unwrap_or(i64::MAX),
        met,
        target_seconds: target.map(|(_, t)| i64::try_from(t.seconds).unwrap_or(i64::MAX)),
        agent: c.assignee,
        team: c.team,
        channel: c.channels.last().copied(),
        inbox: c.inbox,
        priority: c.priority,
        interaction_type: c.interaction_type,
        policy: c.applied_sla.as_ref().map(|a| (a.policy, a.revision)),
        auto: resolution.then(|| c.resolution.as_ref().is_some_and(|r| r.auto)),
        human_agents: resolution
            .then(|| i32::try_from(c.sla.work.repliers.len()).unwrap_or(i32::MAX)),
        definition_version: sla_clock::DEFINITION_VERSION,
    }
}

/// The calendar ids `applied`'s targets name.
pub fn calendar_ids(applied: Option<&AppliedSla>) -> Vec<CalendarId> {
    let mut ids: Vec<CalendarId> = applied
        .into_iter()
        .flat_map(|a| a.policy_at_revision.targets.iter())
        .flat_map(|t| {
            [
                t.first_response,
                t.next_response,
                t.periodic_update,
                t.resolution,
            ]
        })
        .flatten()
        .filter_map(|t| match t.basis {
            TimeBasis::BusinessTime(id) => Some(id),
            TimeBasis::CalendarTime => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The id of `businessCalendars/{id}`.
pub fn calendar_of_name(name: &str) -> Option<CalendarId> {
    name.strip_prefix("businessCalendars/")
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .map(CalendarId)
}

impl<R: Repository, P: Customers, C: Clock> Conversations<R, P, C> {
    /// The calendars `c`'s clocks count on.
    pub(super) async fn hours(&self, tenant: &Tenant, c: &Conversation) -> Result<Hours, Error> {
        let mut hours = Hours::default();
        for id in calendar_ids(c.applied_sla.as_ref()) {
            if let Some(cal) = self.repo().managed::<Calendar>(tenant, id.0).await?
                && let Ok(b) = cal.business()
            {
                hours.calendars.insert(id, b);
            }
        }
        if let Some(inbox) = self.repo().inbox(tenant, c.inbox).await?
            && let Some(id) = calendar_of_name(&inbox.business_calendar)
            && let Some(cal) = self.repo().managed::<Calendar>(tenant, id.0).await?
        {
            hours.inbox = cal.business().ok();
        }
        Ok(hours)
    }

    /// What an acknowledgement of `c` may state beyond the inbox's own
    /// values: with an applied first-response target, the reply time
    /// (`{{expected_reply_time}}`) and when it is due
    /// (`{{expected_reply_by}}`, in the calendar's zone); the next opening
    /// when it is closed now (`{{next_opening}}`, else empty); and, when the
    /// template names them, the customer's names from profiles
    /// (`{{customer.given_name}}` …), as canned responses have them.
    pub(super) async fn acknowledgement_values(
        &self,
        tenant: &Tenant,
        inbox: &Inbox,
        c: &Conversation,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, String>, Error> {
        let mut values = BTreeMap::new();
        let hours = self.hours(tenant, c).await?;
        let target = target_of(c, Metric::FirstResponse);
        let calendar = target
            .and_then(|(_, t)| hours.of(t))
            .or(hours.inbox.as_ref());
        let zone = calendar.map_or(chrono_tz::UTC, BusinessCalendar::zone);
        let say = |t: DateTime<Utc>| {
            t.with_timezone(&zone)
                .format("%A %-d %B %Y, %H:%M %Z")
                .to_string()
        };
        if let Some(e) = evaluations(c, &hours, now)
            .into_iter()
            .find(|e| e.metric == Metric::FirstResponse)
        {
            let secs = i64::try_from(e.target_seconds).unwrap_or(i64::MAX);
            values.insert(
                "expected_reply_time".to_owned(),
                super::rules::human_duration(secs),
            );
            if let Some(due) = e.due {
                values.insert("expected_reply_by".to_owned(), say(due));
            }
        }
        let opening = calendar
            .and_then(|cal| cal.next_opening(now).ok())
            .filter(|t| *t > now);
        values.insert(
            "next_opening".to_owned(),
            opening.map(say).unwrap_or_default(),
        );
        let template = inbox
            .auto_ack
            .as_ref()
            .map(|a| format!("{}{}", a.subject, a.body))
            .unwrap_or_default();
        if template.contains("customer.") {
            let facts = self.customers().facts(tenant, c.customer).await?;
            values.insert("customer.given_name".to_owned(), facts.given_name);
            values.insert("customer.family_name".to_owned(), facts.family_name);
            values.insert("customer.display_name".to_owned(), facts.display_name);
        }
        Ok(values)
    }

    /// Schedules again the SLA timers of every conversation still worked
    /// that counts time on calendar `id` after the calendar changed (a new
    /// holiday moves due times either way): those whose pinned SLA names it,
    /// and those of the inboxes that name it (their calendar places the
    /// warnings of calendar-time targets); then the reminders of the
    /// promises of the agents who keep its hours. Each conversation is its
    /// own change, timers only: a timer it misses still fires at its old
    /// time and re-derives the clock.
    pub(super) async fn reschedule_for_calendar(
        &self,
        tenant: &Tenant,
        id: uuid::Uuid,
    ) -> Result<(), Error> {
        let mut after = None;
        loop {
            let page = self
                .repo()
                .pinned_to_calendar(tenant, id, after, RESCHEDULE_PAGE)
                .await?;
            for c in &page {
                self.reschedule(tenant, c).await?;
            }
            if page.len() < RESCHEDULE_PAGE as usize {
                break;
            }
            after = page.last().map(|c| c.id);
        }
        let users = self.repo().calendar_users(tenant, CalendarId(id)).await?;
        for inbox in users.inboxes {
            self.reschedule_for_inbox(tenant, inbox).await?;
        }
        for agent in users.agents {
            self.remind_again(tenant, agent).await?;
        }
        Ok(())
    }

    /// Schedules again the SLA timers of inbox `inbox`'s conversations
    /// still worked, after the inbox's calendar changed or was edited.
    pub(super) async fn reschedule_for_inbox(
        &self,
        tenant: &Tenant,
        inbox: InboxId,
    ) -> Result<(), Error> {
        let filter = ConversationFilter {
            inbox: Some(inbox),
            states: vec![State::Open, State::Pending, State::Snoozed],
            ..ConversationFilter::default()
        };
        let mut before = None;
        loop {
            let page = self
                .repo()
                .conversations(tenant, &filter, before, RESCHEDULE_PAGE)
                .await?;
            for c in page.iter().filter(|c| c.applied_sla.is_some()) {
                self.reschedule(tenant, c).await?;
            }
            if page.len() < RESCHEDULE_PAGE as usize {
                return Ok(());
            }
            before = page.last().map(|c| c.id);
        }
    }

    /// Writes the SLA timers of `c`'s running clocks as the calendars say
    /// now.
    async fn reschedule(&self, tenant: &Tenant, c: &Conversation) -> Result<(), Error> {
        let hours = self.hours(tenant, c).await?;
        let now = self.clock().now();
        let (mut timers, _) = effects(None, c, &hours, now);
        // What the calendars took away (a warning now at or after its due
        // time) is cancelled: the timer written before is unknown here, so
        // every alert of a running clock without a time now goes.
        for k in c.sla.clocks.iter().filter(|k| k.running()) {
            for alert in [Alert::Warning, Alert::Breach] {
                let scheduled = timers
                    .iter()
                    .any(|t| t.metric == k.metric && t.cycle == k.cycle && t.alert == alert);
                if !scheduled {
                    timers.push(SlaTimer {
                        conversation: c.id,
                        metric: k.metric,
                        cycle: k.cycle,
                        alert,
                        due: None,
                    });
                }
            }
        }
        if timers.is_empty() {
            return Ok(());
        }
        let mut change = ChangeSet::new(tenant, now);
        change.sla_timers = timers;
        self.repo().commit(change).await.map_err(|e| match e {
            rapport_usecase::CommitError::Other(clash) => Error::from(clash),
            _ => Error::Conflict,
        })
    }

    /// The SLA status of `c` now.
    pub async fn sla_status(
        &self,
        tenant: &Tenant,
        c: &Conversation,
    ) -> Result<Vec<Evaluation>, Error> {
        if c.applied_sla.is_none() {
            return Ok(Vec::new());
        }
        let hours = self.hours(tenant, c).await?;
        Ok(evaluations(c, &hours, self.clock().now()))
    }

    /// The policy that applies to `c` (on `channel`) now, pinned at `now`.
    /// The customer's tags are asked of profiles only when a policy looks
    /// at tags.
    pub(super) async fn select_sla(
        &self,
        tenant: &Tenant,
        c: &Conversation,
        channel: Channel,
        now: DateTime<Utc>,
    ) -> Result<Option<AppliedSla>, Error> {
        let mut policies: Vec<SlaPolicy> = Vec::new();
        let mut after = None;
        loop {
            let page: Vec<SlaPolicy> = self.repo().managed_list(tenant, after, 500).await?;
            let full = page.len() == 500;
            after = page.last().map(|p| p.id.0);
            policies.extend(page);
            if !full {
                break;
            }
        }
        if policies.is_empty() {
            return Ok(None);
        }
        let tags = if policies
            .iter()
            .any(|p| !p.condition.customer_tags.is_empty())
        {
            self.customers().facts(tenant, c.customer).await?.tags
        } else {
            Vec::new()
        };
        let subject = SlaSubject {
            channel,
            inbox: c.inbox,
            priority: c.priority,
            interaction_type: c.interaction_type,
            customer_tags: &tags,
        };
        Ok(sla::select(&policies, &subject).map(|p| p.pin(now)))
    }

    /// Selects `next`'s SLA again when `before` → `next` reopened it, moved
    /// it to another inbox, or gave it a priority the pinned policy has no
    /// targets for (a priority it has targets for keeps the pinned copy:
    /// due times are recomputed from the original start).
    pub(super) async fn reapply_sla(
        &self,
        tenant: &Tenant,
        before: &Conversation,
        next: &mut Conversation,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let reopened = before.state == State::Resolved && next.state == State::Open;
        let priority = before.priority != next.priority
            && next
                .applied_sla
                .as_ref()
                .is_none_or(|a| a.policy_at_revision.targets_for(next.priority).is_none());
        if reopened || priority || before.inbox != next.inbox {
            let channel = match next.channels.last() {
                Some(ch) => *ch,
                None => self.inbox(tenant, next.inbox).await?.channel,
            };
            next.applied_sla = self.select_sla(tenant, next, channel, now).await?;
        }
        Ok(())
    }

    /// Adds to `change` the SLA timers and metric facts of `before` →
    /// `after`.
    pub(super) async fn sla_effects(
        &self,
        tenant: &Tenant,
        before: Option<&Conversation>,
        after: &Conversation,
        change: &mut ChangeSet,
    ) -> Result<(), Error> {
        change
            .metric_facts
            .extend(super::metrics::lifecycle_facts(before, after));
        if before.is_some_and(|b| {
            b.sla == after.sla && b.applied_sla == after.applied_sla && b.priority == after.priority
        }) {
            return Ok(());
        }
        // Without an SLA before or after, only a stopped clock (its metric
        // fact) needs the calendars: a new conversation under no policy
        // costs no reads here.
        let measured =
            after.applied_sla.is_some() || before.is_some_and(|b| b.applied_sla.is_some());
        let stopped = before.is_some_and(|b| {
            b.sla.clocks.iter().filter(|k| k.running()).any(|k| {
                after
                    .sla
                    .get(k.metric)
                    .is_none_or(|a| a.cycle != k.cycle || !a.running())
            })
        });
        if !measured && !stopped {
            return Ok(());
        }
        let hours = self.hours(tenant, after).await?;
        let hours_before = match before {
            Some(b) if b.applied_sla != after.applied_sla || b.inbox != after.inbox => {
                Some(self.hours(tenant, b).await?)
            }
            _ => None,
        };
        let before = before.map(|b| (b, hours_before.as_ref().unwrap_or(&hours)));
        let (timers, facts) = effects(before, after, &hours, change.occur_time);
        change.sla_timers.extend(timers);
        change.metric_facts.extend(facts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        metrics::FactMetric,
        rules::{self, Action, tests::conv},
        sla::{PriorityTargets, SlaCondition, SlaPolicyId},
        sla_clock::ClockEvent,
    };

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    /// An open inbound conversation at `t(0)` under a policy of a 1000 s
    /// first response, warning at 50 %, pausing while pending.
    fn measured() -> Conversation {
        let policy = SlaPolicy {
            id: SlaPolicyId::generate(),
            display_name: "p".into(),
            position: 0,
            condition: SlaCondition::default(),
            targets: vec![PriorityTargets {
                priority: Priority::Normal,
                first_response: Some(Target {
                    seconds: 1000,
                    basis: TimeBasis::CalendarTime,
                }),
                next_response: None,
                periodic_update: None,
                resolution: None,
            }],
            pause_when_pending: true,
            pause_when_snoozed: false,
            warn_at_percent: 50,
            escalation: None,
            create_time: t(0),
            update_time: t(0),
            version: 3,
        };
        let mut c = conv(State::Open);
        c.sla.apply(
            ClockEvent::Created {
                customer_waiting: true,
            },
            t(0),
        );
        c.applied_sla = Some(policy.pin(t(0)));
        c
    }

    fn reply(c: &Conversation, at: i64) -> Conversation {
        rules::transition(c, Action::AgentReply { human: true }, Cause::Agent, t(at))
            .unwrap()
            .0
    }

    #[test]
    fn a_firing_timer_re_derives_the_clock() {
        let h = Hours::default();
        let fr = Metric::FirstResponse;
        let c = measured();
        // Early (a worker ahead of a moved due time): fire again then.
        assert_eq!(
            decide(&c, &h, fr, 0, Alert::Breach, t(10)),
            AlertDecision::Later(t(1000))
        );
        assert_eq!(
            decide(&c, &h, fr, 0, Alert::Warning, t(10)),
            AlertDecision::Later(t(500))
        );
        assert!(matches!(
            decide(&c, &h, fr, 0, Alert::Warning, t(500)),
            AlertDecision::Raise(SlaAlertRaised { due, revision: 3, .. }) if due == t(1000)
        ));
        assert!(matches!(
            decide(&c, &h, fr, 0, Alert::Breach, t(1000)),
            AlertDecision::Raise(SlaAlertRaised { due, .. }) if due == t(1000)
        ));
        // Met at 999: a timer firing late never breaches it.
        let met = reply(&c, 999);
        assert_eq!(
            decide(&met, &h, fr, 0, Alert::Breach, t(5000)),
            AlertDecision::Drop
        );
        // Stopped late: the breach happened and is raised.
        let late = reply(&c, 1001);
        assert!(matches!(
            decide(&late, &h, fr, 0, Alert::Breach, t(5000)),
            AlertDecision::Raise(_)
        ));
        assert_eq!(
            decide(&late, &h, fr, 0, Alert::Warning, t(5000)),
            AlertDecision::Drop
        );
        // Paused before its due time: dropped until it resumes.
        let (pending, _) =
            rules::transition(&c, Action::MarkPending, Cause::Agent, t(100)).unwrap();
        assert_eq!(
            decide(&pending, &h, fr, 0, Alert::Breach, t(5000)),
            AlertDecision::Drop
        );
        // Another cycle's timer does nothing.
        assert_eq!(
            decide(&c, &h, fr, 1, Alert::Breach, t(5000)),
            AlertDecision::Drop
        );
    }

    #[test]
    fn a_stop_cancels_the_alerts_and_writes_its_fact_a_late_stop_keeps_the_breach() {
        let h = Hours::default();
        let c = measured();
        let (timers, _) = effects(None, &c, &h, t(0));
        let scheduled: Vec<_> = timers.iter().map(|x| (x.alert, x.due)).collect();
        assert_eq!(
            scheduled,
            vec![
                (Alert::Warning, Some(t(500))),
                (Alert::Breach, Some(t(1000)))
            ]
        );
        let met = reply(&c, 400);
        let (timers, facts) = effects(Some((&c, &h)), &met, &h, t(400));
        assert!(timers.iter().all(|x| x.due.is_none()), "{timers:?}");
        assert_eq!(facts.len(), 1);
        assert_eq!(
            (facts[0].metric, facts[0].calendar_seconds, facts[0].met),
            (FactMetric::FirstResponse, 400, Some(true))
        );
        assert_eq!(facts[0].policy.map(|(_, r)| r), Some(3));
        let late = reply(&c, 1200);
        let (timers, facts) = effects(Some((&c, &h)), &late, &h, t(1200));
        let kinds: Vec<_> = timers.iter().map(|x| (x.alert, x.due)).collect();
        assert_eq!(
            kinds,
            vec![(Alert::Warning, None)],
            "the breach timer stays"
        );
        assert_eq!(facts[0].met, Some(false));
    }

    #[test]
    fn replaying_a_history_through_the_transition_function_gives_the_same_results() {
        use crate::domain::sla_clock::{ClockEvent as E, SlaClocks};
        let h = Hours::default();
        let bot = AgentId::generate();
        let human = AgentId::generate();
        let history: Vec<(i64, Action)> = vec![
            (200, Action::CustomerMessage),
            (300, Action::MarkPending),
            (700, Action::CustomerMessage),
            (900, Action::AgentReply { human: false }),
            (1100, Action::AgentReply { human: true }),
            (1500, Action::CustomerMessage),
            (1600, Action::Snooze(t(99_999))),
            (2600, Action::CustomerMessage),
            (3000, Action::AgentReply { human: true }),
            (
                4000,
                Action::Resolve {
                    code: "done".into(),
                    summary: String::new(),
                    by: None,
                    auto: false,
                },
            ),
            (5000, Action::CustomerMessage),
        ];
        // The stored conversation after every step, and every fact.
        let start = measured();
        let replay = || {
            let mut c = start.clone();
            let (assigned, _) = rules::assign(&c, Some(bot), None, false, None, t(10));
            let (handed, _) = rules::assign(&assigned, Some(human), None, false, Some(bot), t(100));
            let mut facts = effects(Some((&c, &h)), &handed, &h, t(100)).1;
            c = handed;
            for (at, action) in &history {
                let (next, _) =
                    rules::transition(&c, action.clone(), Cause::Agent, t(*at)).unwrap();
                facts.extend(effects(Some((&c, &h)), &next, &h, t(*at)).1);
                c = next;
            }
            (c, facts)
        };
        let (a, facts_a) = replay();
        let (b, facts_b) = replay();
        assert_eq!(a.sla, b.sla);
        assert_eq!(facts_a, facts_b);
        assert_eq!(evaluations(&a, &h, t(9000)), evaluations(&b, &h, t(9000)));
        // The same as folding the clock events alone.
        let mut folded = SlaClocks::default();
        let events = [
            (
                0,
                E::Created {
                    customer_waiting: true,
                },
            ),
            (10, E::Assigned { assigned: true }),
            (100, E::BotHandoff),
            (200, E::CustomerMessage),
            (
                300,
                E::StateChanged {
                    from: State::Open,
                    to: State::Pending,
                },
            ),
            (
                700,
                E::StateChanged {
                    from: State::Pending,
                    to: State::Open,
                },
            ),
            (700, E::CustomerMessage),
            (1100, E::HumanReply),
            (1500, E::CustomerMessage),
            (
                1600,
                E::StateChanged {
                    from: State::Open,
                    to: State::Snoozed,
                },
            ),
            (
                2600,
                E::StateChanged {
                    from: State::Snoozed,
                    to: State::Open,
                },
            ),
            (2600, E::CustomerMessage),
            (3000, E::HumanReply),
            (
                4000,
                E::StateChanged {
                    from: State::Open,
                    to: State::Resolved,
                },
            ),
            (
                5000,
                E::StateChanged {
                    from: State::Resolved,
                    to: State::Open,
                },
            ),
            (5000, E::CustomerMessage),
        ];
        for (at, e) in events {
            folded.apply(e, t(at));
        }
        assert_eq!(a.sla, folded);
        // First response from the hand-off at 100 to the reply at 1100,
        // pending 300–700 paused: 600 s of a 1000 s target.
        let frt = facts_a
            .iter()
            .find(|f| f.metric == FactMetric::FirstResponse)
            .unwrap();
        assert_eq!(
            (frt.start, frt.calendar_seconds, frt.met),
            (t(100), 600, Some(true))
        );
    }

    #[test]
    fn a_calendar_time_target_warns_only_within_the_inboxs_hours() {
        use chrono::Weekday;

        use crate::domain::calendar::{CalendarSpec, WeeklyHours};
        // t(0) is Friday 15 January 2027, 08:00 UTC; the inbox opens at
        // 09:00, after the 1000 s target's due time.
        let spec = CalendarSpec {
            time_zone: "UTC".into(),
            always_open: false,
            weekly_hours: vec![WeeklyHours {
                day: Weekday::Fri,
                start_seconds: 9 * 3600,
                end_seconds: 17 * 3600,
            }],
            holidays: vec![],
        };
        let c = measured();
        let open_all_day = Hours::default();
        let fr = |h: &Hours| {
            evaluations(&c, h, t(0))
                .into_iter()
                .find(|e| e.metric == Metric::FirstResponse)
                .unwrap()
        };
        assert_eq!(fr(&open_all_day).warn_at, Some(t(500)));
        let office = Hours {
            inbox: Some(BusinessCalendar::new(&spec).unwrap()),
            ..Hours::default()
        };
        let e = fr(&office);
        assert_eq!(
            (e.warn_at, e.due),
            (None, Some(t(1000))),
            "no warning at 08:08"
        );
        let (timers, _) = effects(None, &c, &office, t(0));
        assert_eq!(
            timers.iter().map(|x| x.alert).collect::<Vec<_>>(),
            vec![Alert::Breach]
        );
    }
}
