//! SLA clocks: a pure fold of what happened in a conversation (its
//! messages, state changes and hand-offs) into one clock per metric —
//! `{start, pauses, stop}` of its latest cycle — and the evaluation of a
//! clock against a pinned policy's target: due time, warning time, status.
//!
//! The fold keeps facts only (when each clock started, when the
//! conversation was pending or snoozed, when it stopped); which pauses
//! count, the target and the calendar are the evaluation's. So replaying
//! the same history gives the same clocks, and a priority change or an
//! edited calendar re-derives due times from the original start.
//!
//! Rules (PRODUCT.md §3.1 invariants 3–5, peers.md §(c)):
//! - First response stops only at a public reply of a human agent (bots,
//!   internal notes, the acknowledgement and system messages never reach
//!   the fold as replies). A hand-off from a bot moves its start (and the
//!   resolution's, while no human has answered): bot time is not counted.
//! - Next response runs from the oldest unanswered customer message after
//!   the first reply; more customer messages do not move it; a human reply
//!   stops it; each customer message after a reply starts a new cycle.
//! - Periodic update runs from each public human reply to the next: any
//!   such reply stops it (Zammad #3140), and it starts only at a reply, so
//!   it never overlaps the first response (Zammad #5177).
//! - Pending and snoozed spans are recorded on every running clock; a
//!   customer message while pending opens the conversation, which ends the
//!   span and resumes the clock (Zammad #1322).
//! - A resolve stops every clock; a reopen starts a new resolution cycle,
//!   and a customer's message then a new response cycle (Chatwoot #12058).
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{
    calendar::BusinessCalendar,
    model::{AgentId, State},
    sla::{Metric, SlaPolicy, Target},
};

/// The version of these metric definitions, stored with every metric fact
/// so reports know what they were computed by.
pub const DEFINITION_VERSION: i32 = 1;

/// What the fold takes, each at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClockEvent {
    /// The conversation started; `customer_waiting`: a customer's message
    /// started it (an agent's or Rapport's conversation waits on nobody).
    Created {
        /// Whether a customer is waiting.
        customer_waiting: bool,
    },
    /// A customer's message.
    CustomerMessage,
    /// A public reply of a human agent.
    HumanReply,
    /// The conversation moved from a bot to a human agent or a team.
    BotHandoff,
    /// The state changed.
    StateChanged {
        /// Before.
        from: State,
        /// After.
        to: State,
    },
    /// The conversation was assigned to an agent (`true`) or unassigned.
    Assigned {
        /// Whether an agent holds it now.
        assigned: bool,
    },
}

/// A span a conversation spent pending or snoozed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// The state.
    pub state: State,
    /// From.
    pub from: DateTime<Utc>,
    /// Until; `None` while it lasts.
    pub to: Option<DateTime<Utc>>,
}

/// Why a clock stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCause {
    /// A public human reply.
    Reply,
    /// The conversation was resolved.
    Resolved,
}

/// One cycle of one metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricClock {
    /// The metric.
    pub metric: Metric,
    /// Its cycle, from 0.
    pub cycle: u32,
    /// When it started.
    pub start: DateTime<Utc>,
    /// Pending and snoozed spans since the start.
    pub pauses: Vec<Pause>,
    /// When it stopped, and why.
    pub stop: Option<(DateTime<Utc>, StopCause)>,
}

impl MetricClock {
    fn new(metric: Metric, cycle: u32, start: DateTime<Utc>, state: State) -> Self {
        let mut c = Self {
            metric,
            cycle,
            start,
            pauses: Vec::new(),
            stop: None,
        };
        if matches!(state, State::Pending | State::Snoozed) {
            c.pauses.push(Pause {
                state,
                from: start,
                to: None,
            });
        }
        c
    }

    /// Whether it runs (has not stopped).
    pub fn running(&self) -> bool {
        self.stop.is_none()
    }

    fn end_pause(&mut self, at: DateTime<Utc>) {
        if let Some(p) = self.pauses.last_mut()
            && p.to.is_none()
        {
            p.to = Some(at);
        }
    }

    fn halt(&mut self, at: DateTime<Utc>, cause: StopCause) {
        self.end_pause(at);
        self.stop = Some((at, cause));
    }
}

/// The clocks of a conversation: the latest cycle of each metric.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaClocks {
    /// At most one per metric.
    pub clocks: Vec<MetricClock>,
    /// Whether a human agent has replied publicly in the conversation.
    pub answered: bool,
    /// Whether a human agent has replied since the latest (re)open.
    pub answered_in_cycle: bool,
    /// The state as the fold last saw it.
    pub state: Option<State>,
    /// The work of the current resolution cycle (handle time, who
    /// answered): what the KPIs need beyond the clocks.
    #[serde(default)]
    pub work: Work,
}

/// The work of one resolution cycle, folded with the clocks so a replay
/// gives the same handle time and first-contact resolution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// Whether an agent holds the conversation.
    pub assigned: bool,
    /// Since when it has been OPEN and assigned (a stretch of handle time).
    pub since: Option<DateTime<Utc>>,
    /// Seconds OPEN and assigned in this cycle, before `since`.
    pub seconds: i64,
    /// Talk + hold + wrap-up seconds of the calls logged in this cycle.
    pub call_seconds: i64,
    /// Whether a call was logged in this cycle (then handle time is the
    /// calls', as a phone agent's).
    pub calls: bool,
    /// The distinct human agents who replied publicly in this cycle.
    pub repliers: Vec<AgentId>,
}

impl Work {
    /// Handle seconds of the cycle at `at`: the calls' when a call was
    /// logged, else the time OPEN and assigned.
    pub fn handle_seconds(&self, at: DateTime<Utc>) -> i64 {
        if self.calls {
            return self.call_seconds;
        }
        self.seconds + self.since.map_or(0, |s| (at - s).num_seconds().max(0))
    }

    /// Closes the running stretch at `at` and opens one when `state` is
    /// OPEN and an agent holds the conversation.
    /// Only a change of whether it is worked on changes anything: a
    /// customer's message into a busy conversation stays a counts-only
    /// write.
    fn tick(&mut self, state: State, at: DateTime<Utc>) {
        let working = state == State::Open && self.assigned;
        match (self.since, working) {
            (Some(s), false) => {
                self.seconds += (at - s).num_seconds().max(0);
                self.since = None;
            }
            (None, true) => self.since = Some(at),
            _ => {}
        }
    }

    /// A new cycle at `at` (created or reopened): nothing worked yet.
    fn restart(&mut self, state: State, at: DateTime<Utc>) {
        *self = Self {
            assigned: self.assigned,
            ..Self::default()
        };
        self.tick(state, at);
    }
}

impl SlaClocks {
    /// The latest cycle of `metric`.
    pub fn get(&self, metric: Metric) -> Option<&MetricClock> {
        self.clocks.iter().find(|c| c.metric == metric)
    }

    /// Records a public reply of human agent `agent` (the fold's
    /// [`ClockEvent::HumanReply`] knows no agent).
    pub fn replied_by(&mut self, agent: AgentId) {
        if !self.work.repliers.contains(&agent) {
            self.work.repliers.push(agent);
        }
    }

    /// Records a logged call of `seconds` (talk + hold + wrap-up).
    pub fn logged_call(&mut self, seconds: i64) {
        self.work.calls = true;
        self.work.call_seconds += seconds.max(0);
    }

    fn get_mut(&mut self, metric: Metric) -> Option<&mut MetricClock> {
        self.clocks.iter_mut().find(|c| c.metric == metric)
    }

    fn state(&self) -> State {
        self.state.unwrap_or(State::Open)
    }

    /// Starts a new cycle of `metric` at `at` (after the latest one);
    /// returns the cycle it replaced when that one had stopped, or stops it
    /// first.
    fn start(&mut self, metric: Metric, at: DateTime<Utc>, out: &mut Vec<MetricClock>) {
        let state = self.state();
        let cycle = match self.get_mut(metric) {
            Some(old) => {
                if old.running() {
                    old.halt(at, StopCause::Reply);
                }
                out.push(old.clone());
                old.cycle + 1
            }
            None => 0,
        };
        self.clocks.retain(|c| c.metric != metric);
        self.clocks.push(MetricClock::new(metric, cycle, at, state));
        self.clocks.sort_by_key(|c| c.metric as u8);
    }

    fn stop(&mut self, metric: Metric, at: DateTime<Utc>, cause: StopCause) -> Option<MetricClock> {
        let c = self.get_mut(metric).filter(|c| c.running())?;
        c.halt(at, cause);
        Some(c.clone())
    }

    /// Folds `event` at `at` in; the cycles that stopped by it (each once,
    /// as they stopped).
    pub fn apply(&mut self, event: ClockEvent, at: DateTime<Utc>) -> Vec<MetricClock> {
        let mut stopped = Vec::new();
        match event {
            ClockEvent::Created { customer_waiting } => {
                self.state = Some(State::Open);
                self.clocks.clear();
                self.work.restart(State::Open, at);
                self.start(Metric::Resolution, at, &mut stopped);
                if customer_waiting {
                    self.start(Metric::FirstResponse, at, &mut stopped);
                }
                stopped.clear();
            }
            ClockEvent::CustomerMessage => {
                let waiting = [Metric::FirstResponse, Metric::NextResponse]
                    .into_iter()
                    .any(|m| self.get(m).is_some_and(MetricClock::running));
                if !waiting && self.state() != State::Resolved && self.state() != State::Closed {
                    let metric = if self.answered {
                        Metric::NextResponse
                    } else {
                        Metric::FirstResponse
                    };
                    self.start(metric, at, &mut stopped);
                    // Only a running cycle a start replaces is reported.
                    stopped.clear();
                }
            }
            ClockEvent::HumanReply => {
                self.answered = true;
                self.answered_in_cycle = true;
                for m in [Metric::FirstResponse, Metric::NextResponse] {
                    stopped.extend(self.stop(m, at, StopCause::Reply));
                }
                if let Some(c) = self.stop(Metric::PeriodicUpdate, at, StopCause::Reply) {
                    stopped.push(c);
                }
                let mut ignored = Vec::new();
                self.start(Metric::PeriodicUpdate, at, &mut ignored);
            }
            ClockEvent::BotHandoff => {
                if !self.answered_in_cycle {
                    let state = self.state();
                    // Bot time is no handle time either.
                    self.work.restart(state, at);
                    for m in [Metric::FirstResponse, Metric::Resolution] {
                        if let Some(c) = self.get_mut(m).filter(|c| c.running()) {
                            *c = MetricClock::new(m, c.cycle, at, state);
                        }
                    }
                }
            }
            ClockEvent::StateChanged { from: _, to } => {
                let before = self.state();
                self.state = Some(to);
                match to {
                    State::Resolved | State::Closed => {
                        for m in [
                            Metric::FirstResponse,
                            Metric::NextResponse,
                            Metric::PeriodicUpdate,
                            Metric::Resolution,
                        ] {
                            stopped.extend(self.stop(m, at, StopCause::Resolved));
                        }
                    }
                    State::Open if before == State::Resolved => {
                        self.answered_in_cycle = false;
                        self.work.restart(to, at);
                        self.start(Metric::Resolution, at, &mut stopped);
                        stopped.clear();
                    }
                    State::Pending | State::Snoozed if before != to => {
                        for c in self.clocks.iter_mut().filter(|c| c.running()) {
                            c.end_pause(at);
                            c.pauses.push(Pause {
                                state: to,
                                from: at,
                                to: None,
                            });
                        }
                    }
                    _ => {
                        for c in self.clocks.iter_mut().filter(|c| c.running()) {
                            c.end_pause(at);
                        }
                    }
                }
            }
            ClockEvent::Assigned { assigned } => self.work.assigned = assigned,
        }
        self.work.tick(self.state(), at);
        stopped
    }
}

/// Where a metric stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Counting.
    Running,
    /// Stopped while the conversation is pending or snoozed.
    Paused,
    /// Stopped in time.
    Met,
    /// Due passed before it stopped.
    Breached,
}

/// A clock against its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The metric.
    pub metric: Metric,
    /// Its cycle.
    pub cycle: u32,
    /// The target, seconds.
    pub target_seconds: u64,
    /// When it is (or was) due; `None` while paused before it.
    pub due: Option<DateTime<Utc>>,
    /// When the warning is due (within hours); `None`: no warning.
    pub warn_at: Option<DateTime<Utc>>,
    /// The status at the evaluation's `now`.
    pub status: Status,
    /// When it breached (its due time).
    pub breached_at: Option<DateTime<Utc>>,
    /// When it stopped.
    pub stop: Option<DateTime<Utc>>,
}

/// `start + seconds` on `calendar` (calendar time without one); `None`
/// beyond year 9999.
fn add(
    calendar: Option<&BusinessCalendar>,
    start: DateTime<Utc>,
    seconds: u64,
) -> Option<DateTime<Utc>> {
    match calendar {
        Some(c) => c.add(start, seconds).ok(),
        None => i64::try_from(seconds)
            .ok()
            .and_then(Duration::try_seconds)
            .and_then(|d| start.checked_add_signed(d)),
    }
}

/// Seconds in `[from, to)` on `calendar` (calendar time without one).
pub fn measure(calendar: Option<&BusinessCalendar>, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    match calendar {
        Some(c) => c.measure(from, to),
        None => u64::try_from((to - from).num_seconds()).unwrap_or(0),
    }
}

/// The instant at which `seconds` of counted time have run on `clock`
/// (pauses `counts` says count as stopped, skipped); `None` while a pause
/// lasts before then.
fn run_until(
    clock: &MetricClock,
    seconds: u64,
    calendar: Option<&BusinessCalendar>,
    counts: &dyn Fn(State) -> bool,
) -> Option<DateTime<Utc>> {
    let mut cursor = clock.start;
    let mut remaining = seconds;
    for p in clock.pauses.iter().filter(|p| counts(p.state)) {
        let candidate = add(calendar, cursor, remaining)?;
        if p.from >= candidate {
            return Some(candidate);
        }
        remaining -= measure(calendar, cursor, p.from.max(cursor)).min(remaining);
        cursor = cursor.max(p.to?);
    }
    add(calendar, cursor, remaining)
}

/// Time `clock` counted up to `until` (its stop, or now): calendar seconds
/// and business seconds on `calendar` (equal without one), pauses the
/// policy counts (`counts`) left out.
pub fn elapsed(
    clock: &MetricClock,
    until: DateTime<Utc>,
    calendar: Option<&BusinessCalendar>,
    counts: &dyn Fn(State) -> bool,
) -> (u64, u64) {
    let mut cal = measure(None, clock.start, until);
    let mut biz = measure(calendar, clock.start, until);
    for p in clock.pauses.iter().filter(|p| counts(p.state)) {
        let to = p.to.unwrap_or(until).min(until);
        cal = cal.saturating_sub(measure(None, p.from, to));
        biz = biz.saturating_sub(measure(calendar, p.from, to));
    }
    (cal, biz)
}

/// `clock` against `target` of `policy` at `now`: due time (paused time
/// added back), warning time (at the policy's percentage, moved to the
/// next opening of the target's calendar so it fires within hours),
/// status.
pub fn evaluate(
    clock: &MetricClock,
    target: Target,
    calendar: Option<&BusinessCalendar>,
    policy: &SlaPolicy,
    now: DateTime<Utc>,
) -> Evaluation {
    let counts = |s: State| policy.pauses_in(s);
    let due = run_until(clock, target.seconds, calendar, &counts);
    let warn_at = (policy.warn_at_percent > 0)
        .then(|| {
            let secs = target.seconds * u64::from(policy.warn_at_percent) / 100;
            let at = run_until(clock, secs, calendar, &counts)?;
            match calendar {
                Some(c) => c.next_opening(at).ok(),
                None => Some(at),
            }
        })
        .flatten();
    let stop = clock.stop.map(|(t, _)| t);
    let at = stop.unwrap_or(now);
    let (status, breached_at) = match due {
        // A clock still running at its due instant has breached: so has
        // one stopped only then.
        Some(d) if d <= at => (Status::Breached, Some(d)),
        _ if stop.is_some() => (Status::Met, None),
        None => (Status::Paused, None),
        Some(_) => {
            let paused = clock
                .pauses
                .last()
                .is_some_and(|p| p.to.is_none() && counts(p.state));
            (
                if paused {
                    Status::Paused
                } else {
                    Status::Running
                },
                None,
            )
        }
    };
    Evaluation {
        metric: clock.metric,
        cycle: clock.cycle,
        target_seconds: target.seconds,
        due,
        warn_at,
        status,
        breached_at,
        stop,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Weekday};

    use super::*;
    use crate::domain::{
        calendar::{CalendarSpec, WeeklyHours},
        model::Priority,
        sla::{PriorityTargets, SlaCondition, SlaPolicyId, TimeBasis},
    };

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn cal(seconds: u64) -> Target {
        Target {
            seconds,
            basis: TimeBasis::CalendarTime,
        }
    }

    fn policy(pending: bool) -> SlaPolicy {
        SlaPolicy {
            id: SlaPolicyId::generate(),
            display_name: "p".into(),
            position: 0,
            condition: SlaCondition::default(),
            targets: vec![PriorityTargets {
                priority: Priority::Normal,
                first_response: Some(cal(3600)),
                next_response: Some(cal(1800)),
                periodic_update: Some(cal(600)),
                resolution: Some(cal(86_400)),
            }],
            pause_when_pending: pending,
            pause_when_snoozed: true,
            warn_at_percent: 50,
            escalation: None,
            create_time: t(0),
            update_time: t(0),
            version: 1,
        }
    }

    fn fold(events: &[(i64, ClockEvent)]) -> (SlaClocks, Vec<MetricClock>) {
        let mut c = SlaClocks::default();
        let mut stopped = Vec::new();
        for (at, e) in events {
            stopped.extend(c.apply(*e, t(*at)));
        }
        (c, stopped)
    }

    fn eval(c: &SlaClocks, m: Metric, p: &SlaPolicy, now: i64) -> Evaluation {
        let target = p.targets[0].target(m).unwrap();
        evaluate(c.get(m).unwrap(), target, None, p, t(now))
    }

    use ClockEvent::*;
    const INBOUND: ClockEvent = Created {
        customer_waiting: true,
    };
    const fn to(from: State, to: State) -> ClockEvent {
        StateChanged { from, to }
    }

    #[test]
    fn a_customer_message_while_pending_resumes_the_clock() {
        // Zammad #1322: pending at 100, the customer writes at 700.
        let (c, _) = fold(&[
            (0, INBOUND),
            (100, to(State::Open, State::Pending)),
            (700, to(State::Pending, State::Open)),
            (700, CustomerMessage),
        ]);
        let p = policy(true);
        let e = eval(&c, Metric::FirstResponse, &p, 800);
        assert_eq!(e.status, Status::Running);
        assert_eq!(
            e.due,
            Some(t(3600 + 600)),
            "the 600 s pending are added back"
        );
        // Paused while pending: no due time until it resumes.
        let (paused, _) = fold(&[(0, INBOUND), (100, to(State::Open, State::Pending))]);
        let e = eval(&paused, Metric::FirstResponse, &p, 5000);
        assert_eq!((e.status, e.due), (Status::Paused, None));
        // A policy that does not pause on pending counts it.
        let e = eval(&c, Metric::FirstResponse, &policy(false), 800);
        assert_eq!(e.due, Some(t(3600)));
    }

    #[test]
    fn an_agent_reply_always_stops_the_update_clock() {
        // Zammad #3140: every public human reply stops the update cycle and
        // starts the next one.
        let (c, stopped) = fold(&[
            (0, INBOUND),
            (100, HumanReply),
            (300, CustomerMessage),
            (500, HumanReply),
        ]);
        let update = c.get(Metric::PeriodicUpdate).unwrap();
        assert_eq!((update.cycle, update.start), (1, t(500)));
        let first_update = stopped
            .iter()
            .find(|k| k.metric == Metric::PeriodicUpdate)
            .unwrap();
        assert_eq!(first_update.stop, Some((t(500), StopCause::Reply)));
        let p = policy(true);
        assert_eq!(
            evaluate(first_update, cal(600), None, &p, t(10_000)).status,
            Status::Met,
            "a reply inside the update target meets it, forever"
        );
        let nrt = c.get(Metric::NextResponse).unwrap();
        assert_eq!(
            (nrt.start, nrt.stop),
            (t(300), Some((t(500), StopCause::Reply)))
        );
    }

    #[test]
    fn first_response_and_update_are_independent() {
        // Zammad #5177: before the first reply there is no update clock, so
        // a short update target never overrides the first response's.
        let (c, _) = fold(&[(0, INBOUND), (2000, CustomerMessage)]);
        assert!(c.get(Metric::PeriodicUpdate).is_none());
        let p = policy(true);
        let e = eval(&c, Metric::FirstResponse, &p, 2500);
        assert_eq!((e.status, e.due), (Status::Running, Some(t(3600))));
        assert!(
            c.get(Metric::NextResponse).is_none(),
            "still the first response"
        );
        // The first reply stops the first response and starts the update.
        let (c, _) = fold(&[(0, INBOUND), (2000, HumanReply)]);
        assert_eq!(
            eval(&c, Metric::FirstResponse, &p, 9000).status,
            Status::Met
        );
        assert_eq!(c.get(Metric::PeriodicUpdate).unwrap().start, t(2000));
    }

    #[test]
    fn bot_time_is_not_counted() {
        // Chatwoot #7679 / #6409: a bot handles the first 30 minutes.
        let (c, _) = fold(&[(0, INBOUND), (1800, BotHandoff)]);
        let p = policy(true);
        assert_eq!(
            eval(&c, Metric::FirstResponse, &p, 1900).due,
            Some(t(1800 + 3600))
        );
        assert_eq!(c.get(Metric::Resolution).unwrap().start, t(1800));
        // Once a human answered, a later hand-off moves nothing.
        let (c, _) = fold(&[(0, INBOUND), (100, HumanReply), (1800, BotHandoff)]);
        assert_eq!(c.get(Metric::Resolution).unwrap().start, t(0));
    }

    #[test]
    fn a_reopen_starts_new_cycles_from_the_reopen() {
        // Chatwoot PR #12058 / #11787: after a reopen the clocks run from
        // the reopen, not from the creation.
        let (c, stopped) = fold(&[
            (0, INBOUND),
            (100, HumanReply),
            (1000, to(State::Open, State::Resolved)),
            (5000, to(State::Resolved, State::Open)),
            (5000, CustomerMessage),
        ]);
        let resolution = c.get(Metric::Resolution).unwrap();
        assert_eq!((resolution.cycle, resolution.start), (1, t(5000)));
        let nrt = c.get(Metric::NextResponse).unwrap();
        assert_eq!((nrt.cycle, nrt.start), (0, t(5000)));
        assert!(nrt.running());
        // The resolve stopped every running clock, each reported once.
        let metrics: Vec<_> = stopped.iter().map(|k| (k.metric, k.cycle)).collect();
        assert_eq!(
            metrics,
            vec![
                (Metric::FirstResponse, 0),
                (Metric::PeriodicUpdate, 0),
                (Metric::Resolution, 0)
            ]
        );
        // A reopen with no reply ever: a new first response cycle.
        let (c, _) = fold(&[
            (0, INBOUND),
            (10, to(State::Open, State::Resolved)),
            (50, to(State::Resolved, State::Open)),
            (50, CustomerMessage),
        ]);
        let frt = c.get(Metric::FirstResponse).unwrap();
        assert_eq!((frt.cycle, frt.start), (1, t(50)));
    }

    #[test]
    fn a_met_target_never_breaches_and_a_late_one_breaches_at_its_due_time() {
        let p = policy(true);
        let (met, _) = fold(&[(0, INBOUND), (3599, HumanReply)]);
        let e = eval(&met, Metric::FirstResponse, &p, 1_000_000);
        assert_eq!((e.status, e.breached_at), (Status::Met, None));
        let (late, _) = fold(&[(0, INBOUND), (3601, HumanReply)]);
        let e = eval(&late, Metric::FirstResponse, &p, 1_000_000);
        assert_eq!((e.status, e.breached_at), (Status::Breached, Some(t(3600))));
        let (running, _) = fold(&[(0, INBOUND)]);
        assert_eq!(
            eval(&running, Metric::FirstResponse, &p, 3599).status,
            Status::Running
        );
        assert_eq!(
            eval(&running, Metric::FirstResponse, &p, 3600).status,
            Status::Breached
        );
        assert_eq!(
            eval(&running, Metric::FirstResponse, &p, 0).warn_at,
            Some(t(1800))
        );
    }

    #[test]
    fn replaying_the_same_history_gives_the_same_results() {
        let history = [
            (0, INBOUND),
            (60, BotHandoff),
            (100, to(State::Open, State::Snoozed)),
            (400, to(State::Snoozed, State::Open)),
            (400, CustomerMessage),
            (900, HumanReply),
            (950, to(State::Open, State::Pending)),
            (2000, to(State::Pending, State::Open)),
            (2000, CustomerMessage),
            (4000, HumanReply),
            (5000, to(State::Open, State::Resolved)),
        ];
        let (a, sa) = fold(&history);
        let (b, sb) = fold(&history);
        assert_eq!((&a, &sa), (&b, &sb));
        let p = policy(true);
        for m in [
            Metric::FirstResponse,
            Metric::NextResponse,
            Metric::PeriodicUpdate,
            Metric::Resolution,
        ] {
            assert_eq!(eval(&a, m, &p, 9000), eval(&b, m, &p, 9000));
        }
        // And the stored form reads back to the same clocks.
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<SlaClocks>(&json).unwrap(), a);
        // From the hand-off at 60 to the first reply at 900, snoozed 300 s:
        // 540 s counted.
        let frt = sa
            .iter()
            .find(|k| k.metric == Metric::FirstResponse)
            .unwrap();
        assert_eq!(elapsed(frt, t(900), None, &|s| p.pauses_in(s)), (540, 540));
    }

    #[test]
    fn warnings_fall_within_working_hours() {
        // Monday to Friday 09:00–17:00 UTC.
        let spec = CalendarSpec {
            time_zone: "UTC".into(),
            always_open: false,
            weekly_hours: [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ]
            .into_iter()
            .map(|day| WeeklyHours {
                day,
                start_seconds: 9 * 3600,
                end_seconds: 17 * 3600,
            })
            .collect(),
            holidays: vec![],
        };
        let hours = BusinessCalendar::new(&spec).unwrap();
        let friday = |h: u32| Utc.with_ymd_and_hms(2026, 12, 4, h, 0, 0).unwrap();
        let monday = |h: u32| Utc.with_ymd_and_hms(2026, 12, 7, h, 0, 0).unwrap();
        let p = SlaPolicy {
            warn_at_percent: 50,
            ..policy(true)
        };
        let biz = Target {
            seconds: 4 * 3600,
            basis: TimeBasis::BusinessTime(crate::domain::calendars::CalendarId::generate()),
        };
        let mut c = SlaClocks::default();
        c.apply(INBOUND, friday(15));
        let e = evaluate(
            c.get(Metric::FirstResponse).unwrap(),
            biz,
            Some(&hours),
            &p,
            friday(15),
        );
        // Two business hours run out at Friday's closing: the warning waits
        // for Monday's opening, never at night or on the weekend.
        assert_eq!(e.warn_at, Some(monday(9)));
        assert_eq!(e.due, Some(monday(11)));
        // Arriving on Saturday: the clock starts at Monday's opening.
        let mut c = SlaClocks::default();
        c.apply(INBOUND, friday(12) + Duration::days(1));
        let e = evaluate(
            c.get(Metric::FirstResponse).unwrap(),
            biz,
            Some(&hours),
            &p,
            friday(20),
        );
        assert_eq!((e.warn_at, e.due), (Some(monday(11)), Some(monday(13))));
    }
}
