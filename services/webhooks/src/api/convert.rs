//! Domain values ⇄ protobuf messages, and the resource names of the API.
use rapport_kit::convert::ts;
use rapport_proto::webhooks as pb;
use uuid::Uuid;

use crate::domain::{Violations, model::*};

/// `webhookSubscriptions/{id}`.
pub fn subscription_name(id: SubscriptionId) -> String {
    format!("webhookSubscriptions/{id}")
}

/// `webhookSubscriptions/{subscription}/deliveries/{id}`.
pub fn delivery_name(subscription: SubscriptionId, id: DeliveryId) -> String {
    format!("webhookSubscriptions/{subscription}/deliveries/{id}")
}

/// The subscription a `webhookSubscriptions/{id}` field names; a violation
/// of `field` otherwise.
pub fn subscription_id(name: &str, field: &str, v: &mut Violations) -> Option<SubscriptionId> {
    match name
        .strip_prefix("webhookSubscriptions/")
        .map(Uuid::parse_str)
    {
        Some(Ok(id)) => Some(SubscriptionId(id)),
        _ => {
            v.add(
                field,
                "must be a webhook subscription resource name, `webhookSubscriptions/{webhook_subscription}`",
            );
            None
        }
    }
}

/// A state from protobuf; `Ok(None)` for UNSPECIFIED.
pub fn state_from_pb(raw: i32) -> Result<Option<SubscriptionState>, &'static str> {
    match pb::WebhookSubscriptionState::try_from(raw).map_err(|_| "unknown state")? {
        pb::WebhookSubscriptionState::Unspecified => Ok(None),
        pb::WebhookSubscriptionState::Active => Ok(Some(SubscriptionState::Active)),
        pb::WebhookSubscriptionState::Disabled => Ok(Some(SubscriptionState::Disabled)),
    }
}

fn state_to_pb(s: SubscriptionState) -> pb::WebhookSubscriptionState {
    match s {
        SubscriptionState::Active => pb::WebhookSubscriptionState::Active,
        SubscriptionState::Disabled => pb::WebhookSubscriptionState::Disabled,
    }
}

fn reason_to_pb(r: Option<DisableReason>) -> pb::DisableReason {
    match r {
        None => pb::DisableReason::Unspecified,
        Some(DisableReason::DeliveryFailing) => pb::DisableReason::DeliveryFailing,
        Some(DisableReason::Requested) => pb::DisableReason::Requested,
    }
}

fn delivery_state_to_pb(s: DeliveryState) -> pb::WebhookDeliveryState {
    match s {
        DeliveryState::Pending => pb::WebhookDeliveryState::Pending,
        DeliveryState::Delivered => pb::WebhookDeliveryState::Delivered,
        DeliveryState::Failed => pb::WebhookDeliveryState::Failed,
    }
}

/// A subscription as the API shows it: never its secret, only the hint.
pub fn subscription_to_pb(s: &Subscription) -> pb::WebhookSubscription {
    pb::WebhookSubscription {
        name: subscription_name(s.id),
        url: s.url.as_str().to_owned(),
        event_types: s.event_types.to_strings(),
        state: state_to_pb(s.state) as i32,
        disable_reason: reason_to_pb(s.disable_reason) as i32,
        secret_hint: s.secret.hint(),
        create_time: Some(ts(s.create_time)),
        update_time: Some(ts(s.update_time)),
        etag: s.etag(),
    }
}

/// A delivery as the API shows it (without its body).
pub fn delivery_to_pb(d: &Delivery) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        name: delivery_name(d.subscription, d.id),
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        state: delivery_state_to_pb(d.state) as i32,
        attempt_count: i32::try_from(d.attempts).unwrap_or(i32::MAX),
        last_status_code: d.last_status_code.map(i32::from).unwrap_or(0),
        last_error: d.last_error.clone(),
        next_attempt_time: d.next_attempt_time.map(ts),
        last_attempt_time: d.last_attempt_time.map(ts),
        create_time: Some(ts(d.create_time)),
    }
}
