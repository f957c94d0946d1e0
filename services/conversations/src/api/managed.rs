//! Teams, agents and canned responses on the wire: one conversion each
//! ([`Wire`]), and the four resource RPCs written once over it.
use rapport_proto::conversations as pb;
use rapport_usecase::{Idempotency, Violations};
use tonic::Status;
use uuid::Uuid;

use crate::domain::calendars::{Calendar, CalendarId};

use super::{
    call::invalid,
    command::id_in,
    convert::{channel_from_pb, channel_to_pb, team_name},
    error::to_status,
};
use crate::domain::{
    Clock, Tenant, managed::Managed, model::*, ports::Customers, repository::Repository,
    service::Conversations,
};

/// A managed resource's protobuf message and its conversions.
pub trait Wire: Managed {
    /// The message.
    type Pb;
    /// The collection of its resource names (`teams`).
    const COLLECTION: &'static str;
    /// It on the wire.
    fn to_pb(&self) -> Self::Pb;
    /// Its name and etag in a message.
    fn name_etag(pb: &Self::Pb) -> (&str, &str);
    /// A message as a value (id, times and version are the service's),
    /// reporting bad fields under [`Managed::FIELD`]; `create`: the fields
    /// that never change afterwards are read too.
    fn from_pb(pb: &Self::Pb, create: bool, v: &mut Violations) -> Self;
    /// Copies the field `path` of `from` into `self`; `false` for a path
    /// that is not updatable.
    fn apply(&mut self, from: &Self, path: &str) -> bool;
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> Option<prost_types::Timestamp> {
    Some(rapport_kit::convert::ts(t))
}

const EPOCH: chrono::DateTime<chrono::Utc> = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;

impl Wire for Team {
    type Pb = pb::Team;
    const COLLECTION: &'static str = "teams";
    fn to_pb(&self) -> pb::Team {
        pb::Team {
            name: self.name(),
            display_name: self.display_name.clone(),
            auto_assign: self.auto_assign,
            etag: self.etag(),
            create_time: ts(self.create_time),
            update_time: ts(self.update_time),
        }
    }
    fn name_etag(pb: &pb::Team) -> (&str, &str) {
        (&pb.name, &pb.etag)
    }
    fn from_pb(pb: &pb::Team, _: bool, _: &mut Violations) -> Self {
        Team {
            id: TeamId(Uuid::nil()),
            display_name: pb.display_name.clone(),
            auto_assign: pb.auto_assign,
            create_time: EPOCH,
            update_time: EPOCH,
            version: 0,
        }
    }
    fn apply(&mut self, from: &Self, path: &str) -> bool {
        match path {
            "display_name" => self.display_name.clone_from(&from.display_name),
            "auto_assign" => self.auto_assign = from.auto_assign,
            _ => return false,
        }
        true
    }
}

impl Wire for Agent {
    type Pb = pb::Agent;
    const COLLECTION: &'static str = "agents";
    fn to_pb(&self) -> pb::Agent {
        pb::Agent {
            name: self.name(),
            display_name: self.display_name.clone(),
            kind: match self.kind {
                AgentKind::Human => pb::AgentKind::Human,
                AgentKind::Bot => pb::AgentKind::Bot,
            } as i32,
            principal: self.principal.clone(),
            teams: self.teams.iter().map(|t| team_name(Some(*t))).collect(),
            availability: match self.availability {
                Availability::Available => pb::AgentAvailability::Available,
                Availability::Busy => pb::AgentAvailability::Busy,
                Availability::Offline => pb::AgentAvailability::Offline,
            } as i32,
            capacity: self.capacity,
            locale: self.locale.clone(),
            business_calendar: self
                .business_calendar
                .map(|c| Calendar::name_of(c.0))
                .unwrap_or_default(),
            etag: self.etag(),
            create_time: ts(self.create_time),
            update_time: ts(self.update_time),
        }
    }
    fn name_etag(pb: &pb::Agent) -> (&str, &str) {
        (&pb.name, &pb.etag)
    }
    fn from_pb(pb: &pb::Agent, create: bool, v: &mut Violations) -> Self {
        let kind = match pb::AgentKind::try_from(pb.kind) {
            Ok(pb::AgentKind::Human) => AgentKind::Human,
            Ok(pb::AgentKind::Bot) => AgentKind::Bot,
            _ => {
                if create {
                    v.add("agent.kind", "is required: HUMAN or BOT");
                }
                AgentKind::Human
            }
        };
        let availability = match pb::AgentAvailability::try_from(pb.availability) {
            Ok(pb::AgentAvailability::Available) => Availability::Available,
            Ok(pb::AgentAvailability::Busy) => Availability::Busy,
            Ok(pb::AgentAvailability::Offline | pb::AgentAvailability::Unspecified) => {
                Availability::Offline
            }
            Err(_) => {
                v.add("agent.availability", "is not a known value");
                Availability::Offline
            }
        };
        let teams = pb
            .teams
            .iter()
            .enumerate()
            .filter_map(|(n, t)| {
                v.take(&format!("agent.teams[{n}]"), id_in(t, "teams"))
                    .map(TeamId)
            })
            .collect();
        Agent {
            id: AgentId(Uuid::nil()),
            display_name: pb.display_name.clone(),
            kind,
            principal: pb.principal.clone(),
            teams,
            availability,
            capacity: pb.capacity,
            locale: pb.locale.clone(),
            business_calendar: if pb.business_calendar.is_empty() {
                None
            } else {
                v.take(
                    "agent.business_calendar",
                    id_in(&pb.business_calendar, "businessCalendars"),
                )
                .map(CalendarId)
            },
            create_time: EPOCH,
            update_time: EPOCH,
            version: 0,
        }
    }
    fn apply(&mut self, from: &Self, path: &str) -> bool {
        match path {
            "display_name" => self.display_name.clone_from(&from.display_name),
            "principal" => self.principal.clone_from(&from.principal),
            "teams" => self.teams.clone_from(&from.teams),
            "availability" => self.availability = from.availability,
            "capacity" => self.capacity = from.capacity,
            "locale" => self.locale.clone_from(&from.locale),
            "business_calendar" => self.business_calendar = from.business_calendar,
            _ => return false,
        }
        true
    }
}

impl Wire for CannedResponse {
    type Pb = pb::CannedResponse;
    const COLLECTION: &'static str = "cannedResponses";
    fn to_pb(&self) -> pb::CannedResponse {
        pb::CannedResponse {
            name: self.name(),
            shortcode: self.shortcode.clone(),
            title: self.title.clone(),
            body: self.body.clone(),
            variants: self
                .variants
                .iter()
                .map(|v| pb::CannedResponseVariant {
                    locale: v.locale.clone(),
                    channel: v.channel.map_or(0, channel_to_pb),
                    body: v.body.clone(),
                })
                .collect(),
            etag: self.etag(),
            create_time: ts(self.create_time),
            update_time: ts(self.update_time),
        }
    }
    fn name_etag(pb: &pb::CannedResponse) -> (&str, &str) {
        (&pb.name, &pb.etag)
    }
    fn from_pb(pb: &pb::CannedResponse, _: bool, v: &mut Violations) -> Self {
        let variants = pb
            .variants
            .iter()
            .enumerate()
            .map(|(n, x)| Variant {
                locale: x.locale.clone(),
                channel: v
                    .take(
                        &format!("canned_response.variants[{n}].channel"),
                        channel_from_pb(x.channel),
                    )
                    .flatten(),
                body: x.body.clone(),
            })
            .collect();
        CannedResponse {
            id: CannedResponseId(Uuid::nil()),
            shortcode: pb.shortcode.clone(),
            title: pb.title.clone(),
            body: pb.body.clone(),
            variants,
            create_time: EPOCH,
            update_time: EPOCH,
            version: 0,
        }
    }
    fn apply(&mut self, from: &Self, path: &str) -> bool {
        match path {
            "shortcode" => self.shortcode.clone_from(&from.shortcode),
            "title" => self.title.clone_from(&from.title),
            "body" => self.body.clone_from(&from.body),
            "variants" => self.variants.clone_from(&from.variants),
            _ => return false,
        }
        true
    }
}

/// The id in a managed resource's name.
pub fn id_of<T: Wire>(name: &str, field: &str) -> Result<Uuid, Status> {
    id_in(name, T::COLLECTION).map_err(|why| invalid(Violations::one(field, why)))
}

/// Create, get and update of any managed resource.
pub struct Rpcs<'a, R, P, C> {
    /// The use-cases.
    pub service: &'a Conversations<R, P, C>,
    /// The caller's tenant.
    pub tenant: Tenant,
}

impl<R: Repository, P: Customers, C: Clock> Rpcs<'_, R, P, C> {
    /// Create.
    pub async fn create<T: Wire>(
        &self,
        value: Option<&T::Pb>,
        key: Option<Idempotency>,
    ) -> Result<T::Pb, Status> {
        let pb = value.ok_or_else(|| invalid(Violations::one(T::FIELD, "is required")))?;
        let mut v = Violations::default();
        let value = T::from_pb(pb, true, &mut v);
        // The domain's rules too, so that every bad field is reported at once.
        value.check(T::FIELD, &mut v);
        v.check().map_err(invalid)?;
        let created = self
            .service
            .create_managed(&self.tenant, value, key)
            .await
            .map_err(to_status)?;
        Ok(created.to_pb())
    }

    /// Get.
    pub async fn get<T: Wire>(&self, name: &str) -> Result<T::Pb, Status> {
        let id = id_of::<T>(name, "name")?;
        let value: T = self
            .service
            .managed(&self.tenant, id)
            .await
            .map_err(to_status)?;
        Ok(value.to_pb())
    }

    /// Update the fields `mask` names.
    pub async fn update<T: Wire>(
        &self,
        value: Option<&T::Pb>,
        mask: Option<&prost_types::FieldMask>,
        key: Option<Idempotency>,
    ) -> Result<T::Pb, Status> {
        let pb = value.ok_or_else(|| invalid(Violations::one(T::FIELD, "is required")))?;
        let (name, etag) = T::name_etag(pb);
        let mut v = Violations::default();
        let id = v.take(&format!("{}.name", T::FIELD), id_in(name, T::COLLECTION));
        let from = T::from_pb(pb, false, &mut v);
        let paths = mask.map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            v.add("update_mask", "is required");
        }
        let mut probe = from.clone();
        for path in &paths {
            if !probe.apply(&from, path) {
                v.add("update_mask", format!("`{path}` is not an updatable field"));
            }
        }
        v.check().map_err(invalid)?;
        let etag = Some(etag.to_owned()).filter(|e| !e.is_empty());
        let updated = self
            .service
            .update_managed(
                &self.tenant,
                id.expect("checked"),
                etag,
                key,
                |current: &T| {
                    let mut next = current.clone();
                    for path in &paths {
                        next.apply(&from, path);
                    }
                    next
                },
            )
            .await
            .map_err(to_status)?;
        Ok(updated.to_pb())
    }
}
