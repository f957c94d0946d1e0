//! Subscriptions, deliveries and the events they carry.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use rapport_usecase::Tenant;
use rapport_usecase::{str_enum, uuid_id};

use super::values::{EventTypes, SigningSecret, WebhookUrl};

uuid_id!(
    /// Id of a subscription (`webhookSubscriptions/{id}`).
    SubscriptionId
);

uuid_id!(
    /// Id of a delivery (`webhookSubscriptions/{subscription}/deliveries/{id}`).
    DeliveryId
);

/// Whether a subscription receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionState {
    /// Events are delivered.
    Active,
    /// Nothing is delivered.
    Disabled,
}
str_enum!(SubscriptionState { Active => "active", Disabled => "disabled" });

/// Why a subscription is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisableReason {
    /// A delivery failed for the whole retry window.
    DeliveryFailing,
    /// Someone disabled it.
    Requested,
}
str_enum!(DisableReason { DeliveryFailing => "delivery_failing", Requested => "requested" });

/// A partner's subscription to a tenant's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Id.
    pub id: SubscriptionId,
    /// Where deliveries go.
    pub url: WebhookUrl,
    /// Which events.
    pub event_types: EventTypes,
    /// Active or disabled.
    pub state: SubscriptionState,
    /// Why disabled; `None` while active.
    pub disable_reason: Option<DisableReason>,
    /// What deliveries are signed with.
    pub secret: SigningSecret,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Optimistic concurrency version; the etag is derived from it.
    pub version: i64,
}

impl Subscription {
    /// The etag clients send back: the version, quoted as in HTTP.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    /// Whether an event of `event_type` is delivered to it now.
    pub fn receives(&self, event_type: &str) -> bool {
        self.state == SubscriptionState::Active && self.event_types.matches(event_type)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// An attempt is due.
    Pending,
    /// A 2xx answer came.
    Delivered,
    /// Given up.
    Failed,
}
str_enum!(DeliveryState { Pending => "pending", Delivered => "delivered", Failed => "failed" });

/// One event on its way to one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Id.
    pub id: DeliveryId,
    /// To whom.
    pub subscription: SubscriptionId,
    /// The event's id: the `webhook-id` of every attempt.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The JSON body every attempt sends.
    pub body: String,
    /// Pending, delivered or failed.
    pub state: DeliveryState,
    /// Attempts started so far.
    pub attempts: u32,
    /// HTTP status of the last answer, if the last attempt got one.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed; empty otherwise.
    pub last_error: String,
    /// Created: when the event reached the service. The retry window
    /// counts from here.
    pub create_time: DateTime<Utc>,
    /// When the last attempt started.
    pub last_attempt_time: Option<DateTime<Utc>>,
    /// When the next attempt is due, while pending.
    pub next_attempt_time: Option<DateTime<Utc>>,
}

/// An event as it is delivered: its id and type, and the JSON body made of
/// it (`{"type", "subject", "tenant", "time", "data"}`), rendered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The event id.
    pub id: String,
    /// Its type, `rapport.profiles.v1.CustomerCreated`.
    pub event_type: String,
    /// The body.
    pub body: String,
}
