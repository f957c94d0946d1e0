//! Business calendars as a resource admins manage
//! (`businessCalendars/{id}`): a name and the hours of [`CalendarSpec`],
//! versioned and stored like teams and canned responses, unique per tenant
//! by display name. Business-time arithmetic is [`super::calendar`].
use chrono::{DateTime, Utc};
use rapport_usecase::{Violations, uuid_id};
use serde::{Deserialize, Serialize};

use super::{
    calendar::{BusinessCalendar, CalendarSpec},
    error::Kind,
    managed::Managed,
    rules,
};

uuid_id!(
    /// Id of a business calendar (`businessCalendars/{id}`).
    CalendarId
);

/// A business calendar resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calendar {
    /// Id.
    pub id: CalendarId,
    /// Name shown to admins, unique per tenant ignoring case.
    pub display_name: String,
    /// Its zone and hours.
    pub spec: CalendarSpec,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Version (the etag).
    pub version: i64,
}

impl Calendar {
    /// The resource name of calendar `id`.
    pub fn name_of(id: uuid::Uuid) -> String {
        format!("businessCalendars/{id}")
    }

    /// The calendar business time is computed on. A stored calendar was
    /// checked when it was written, so this fails only on a tzdb that lost
    /// its zone.
    pub fn business(&self) -> Result<BusinessCalendar, Violations> {
        BusinessCalendar::new(&self.spec)
    }
}

impl Managed for Calendar {
    const KIND: Kind = Kind::BusinessCalendar;
    const FIELD: &'static str = "business_calendar";
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
            self.id = CalendarId(id);
        }
        self.display_name = self.display_name.trim().to_owned();
        self.spec.time_zone = self.spec.time_zone.trim().to_owned();
        (self.version, self.create_time, self.update_time) = (version, create, now);
    }
    fn check(&self, prefix: &str, v: &mut Violations) {
        let name = self.display_name.trim();
        if name.is_empty() || name.chars().count() > rules::MAX_NAME {
            v.add(
                format!("{prefix}.display_name"),
                "is required, at most 200 characters",
            );
        }
        if let Err(bad) = BusinessCalendar::new(&self.spec) {
            for (field, why) in bad.0 {
                v.add(format!("{prefix}.{field}"), why);
            }
        }
    }
    fn name(&self) -> String {
        format!("businessCalendars/{}", self.id)
    }
}
