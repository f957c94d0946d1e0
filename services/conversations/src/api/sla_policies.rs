//! SLA policies on the wire: the resource's conversion ([`Wire`]) and
//! ReorderSlaPolicies; the other resource RPCs are the managed ones.
use chrono::{DateTime, Utc};
use rapport_kit::convert::ts;
use rapport_proto::conversations as pb;
use rapport_usecase::Violations;
use uuid::Uuid;

use super::{
    command::id_in,
    convert::{
        channel_from_pb, channel_to_pb, duration_secs, inbox_name, interaction_type_from_pb,
        interaction_type_to_pb, priority_from_pb, priority_to_pb, team_name,
    },
    managed::Wire,
};
use crate::domain::{
    InboxId, Priority, TeamId,
    calendars::CalendarId,
    managed::Managed,
    sla::{Escalation, PriorityTargets, SlaCondition, SlaPolicy, SlaPolicyId, Target, TimeBasis},
};

const EPOCH: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

fn target_to_pb(t: Option<Target>) -> Option<pb::SlaTarget> {
    t.map(|t| pb::SlaTarget {
        duration: Some(prost_types::Duration {
            seconds: t.seconds as i64,
            nanos: 0,
        }),
        business_calendar: match t.basis {
            TimeBasis::CalendarTime => String::new(),
            TimeBasis::BusinessTime(c) => format!("businessCalendars/{c}"),
        },
    })
}

fn target_from_pb(t: Option<&pb::SlaTarget>, at: &str, v: &mut Violations) -> Option<Target> {
    let t = t?;
    let seconds = v
        .take(
            &format!("{at}.duration"),
            duration_secs(t.duration.as_ref()),
        )
        .unwrap_or(1);
    let basis = if t.business_calendar.is_empty() {
        TimeBasis::CalendarTime
    } else {
        let id = v
            .take(
                &format!("{at}.business_calendar"),
                id_in(&t.business_calendar, "businessCalendars"),
            )
            .unwrap_or(Uuid::nil());
        TimeBasis::BusinessTime(CalendarId(id))
    };
    Some(Target {
        seconds: seconds as u64,
        basis,
    })
}

/// Each value of a repeated enum field, an unspecified or unknown one
/// reported at its index.
fn each<T>(
    raw: &[i32],
    field: &str,
    v: &mut Violations,
    from: impl Fn(i32) -> Result<Option<T>, &'static str>,
) -> Vec<T> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, &r)| {
            let at = format!("{field}[{i}]");
            v.take(
                &at,
                from(r).and_then(|x| x.ok_or("must not be unspecified")),
            )
        })
        .collect()
}

impl Wire for SlaPolicy {
    type Pb = pb::SlaPolicy;
    const COLLECTION: &'static str = "slaPolicies";
    fn to_pb(&self) -> pb::SlaPolicy {
        let c = &self.condition;
        pb::SlaPolicy {
            name: self.name(),
            display_name: self.display_name.clone(),
            position: self.position,
            condition: Some(pb::SlaCondition {
                channels: c.channels.iter().map(|&x| channel_to_pb(x)).collect(),
                inboxes: c.inboxes.iter().map(|&i| inbox_name(i)).collect(),
                priorities: c.priorities.iter().map(|&p| priority_to_pb(p)).collect(),
                interaction_types: c
                    .interaction_types
                    .iter()
                    .map(|&t| interaction_type_to_pb(Some(t)))
                    .collect(),
                customer_tags: c.customer_tags.clone(),
            }),
            targets: self
                .targets
                .iter()
                .map(|t| pb::SlaPriorityTargets {
                    priority: priority_to_pb(t.priority),
                    first_response: target_to_pb(t.first_response),
                    next_response: target_to_pb(t.next_response),
                    periodic_update: target_to_pb(t.periodic_update),
                    resolution: target_to_pb(t.resolution),
                })
                .collect(),
            pause_when_pending: self.pause_when_pending,
            pause_when_snoozed: self.pause_when_snoozed,
            warn_at_percent: i32::from(self.warn_at_percent),
            revision: self.version,
            etag: self.etag(),
            create_time: Some(ts(self.create_time)),
            update_time: Some(ts(self.update_time)),
            escalation: self.escalation.map(|e| pb::SlaEscalation {
                raise_priority_to: e.raise_priority_to.map_or(0, priority_to_pb),
                move_to_team: team_name(e.move_to_team),
            }),
        }
    }
    fn name_etag(pb: &pb::SlaPolicy) -> (&str, &str) {
        (&pb.name, &pb.etag)
    }
    fn from_pb(pb: &pb::SlaPolicy, _: bool, v: &mut Violations) -> Self {
        let at = "sla_policy.condition";
        let c = pb.condition.clone().unwrap_or_default();
        let condition = SlaCondition {
            channels: each(&c.channels, &format!("{at}.channels"), v, channel_from_pb),
            inboxes: c
                .inboxes
                .iter()
                .enumerate()
                .filter_map(|(i, name)| {
                    v.take(&format!("{at}.inboxes[{i}]"), id_in(name, "inboxes"))
                        .map(InboxId)
                })
                .collect(),
            priorities: each(
                &c.priorities,
                &format!("{at}.priorities"),
                v,
                priority_from_pb,
            ),
            interaction_types: each(
                &c.interaction_types,
                &format!("{at}.interaction_types"),
                v,
                interaction_type_from_pb,
            ),
            customer_tags: c.customer_tags.clone(),
        };
        let targets = pb
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let at = format!("sla_policy.targets[{i}]");
                PriorityTargets {
                    priority: v
                        .take(
                            &format!("{at}.priority"),
                            priority_from_pb(t.priority).and_then(|p| p.ok_or("is required")),
                        )
                        .unwrap_or(Priority::Normal),
                    first_response: target_from_pb(
                        t.first_response.as_ref(),
                        &format!("{at}.first_response"),
                        v,
                    ),
                    next_response: target_from_pb(
                        t.next_response.as_ref(),
                        &format!("{at}.next_response"),
                        v,
                    ),
                    periodic_update: target_from_pb(
                        t.periodic_update.as_ref(),
                        &format!("{at}.periodic_update"),
                        v,
                    ),
                    resolution: target_from_pb(
                        t.resolution.as_ref(),
                        &format!("{at}.resolution"),
                        v,
                    ),
                }
            })
            .collect();
        let warn_at_percent = v
            .take(
                "sla_policy.warn_at_percent",
                u8::try_from(pb.warn_at_percent)
                    .ok()
                    .filter(|p| *p < 100)
                    .ok_or("must be 1 to 99 (or 0: no warning)"),
            )
            .unwrap_or(0);
        let escalation = pb.escalation.as_ref().map(|e| Escalation {
            raise_priority_to: v
                .take(
                    "sla_policy.escalation.raise_priority_to",
                    priority_from_pb(e.raise_priority_to),
                )
                .flatten(),
            move_to_team: if e.move_to_team.is_empty() {
                None
            } else {
                v.take(
                    "sla_policy.escalation.move_to_team",
                    id_in(&e.move_to_team, "teams"),
                )
                .map(TeamId)
            },
        });
        SlaPolicy {
            id: SlaPolicyId(Uuid::nil()),
            display_name: pb.display_name.clone(),
            position: pb.position,
            condition,
            targets,
            pause_when_pending: pb.pause_when_pending,
            pause_when_snoozed: pb.pause_when_snoozed,
            warn_at_percent,
            escalation: escalation.filter(|e| *e != Escalation::default()),
            create_time: EPOCH,
            update_time: EPOCH,
            version: 0,
        }
    }
    fn apply(&mut self, from: &Self, path: &str) -> bool {
        match path {
            "display_name" => self.display_name.clone_from(&from.display_name),
            "position" => self.position = from.position,
            "condition" => self.condition.clone_from(&from.condition),
            "targets" => self.targets.clone_from(&from.targets),
            "pause_when_pending" => self.pause_when_pending = from.pause_when_pending,
            "pause_when_snoozed" => self.pause_when_snoozed = from.pause_when_snoozed,
            "warn_at_percent" => self.warn_at_percent = from.warn_at_percent,
            "escalation" => self.escalation = from.escalation,
            _ => return false,
        }
        true
    }
}

/// ReorderSlaPolicies → every policy, in the new order.
pub fn order(req: &pb::ReorderSlaPoliciesRequest) -> Result<Vec<SlaPolicyId>, Violations> {
    let mut v = Violations::default();
    let order = req
        .names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            v.take(&format!("names[{i}]"), id_in(name, SlaPolicy::COLLECTION))
                .map(SlaPolicyId)
        })
        .collect();
    if req.names.is_empty() {
        v.add("names", "is required: every policy, in the new order");
    }
    v.check()?;
    Ok(order)
}
