//! Requests → commands: each RPC's request converted, whole, into the
//! domain values its use-case takes. A conversion checks every field and
//! reports every bad one with its path in the request.
use rapport_proto::webhooks as pb;

use super::{convert, events};
use crate::domain::{
    SubscriptionId, Violations,
    rules::{NewSubscription, SubscriptionUpdate},
    values::{EventTypes, WebhookUrl},
};

const URL: &str = "webhook_subscription.url";
const EVENT_TYPES: &str = "webhook_subscription.event_types";

/// Paths of a subscription that exist but are output only.
const OUTPUT_ONLY: &[&str] = &[
    "name",
    "disable_reason",
    "secret_hint",
    "create_time",
    "update_time",
    "etag",
];

/// The subscription one `webhookSubscriptions/{id}` field names.
pub fn subscription_id(name: &str, field: &str) -> Result<SubscriptionId, Violations> {
    let mut v = Violations::default();
    convert::subscription_id(name, field, &mut v).ok_or(v)
}

/// An etag sent by the client; empty means "don't check".
fn etag(raw: &str) -> Option<String> {
    (!raw.is_empty()).then(|| raw.to_owned())
}

fn event_types(raw: &[String], v: &mut Violations) -> Option<EventTypes> {
    EventTypes::parse(raw, events::event_types(), EVENT_TYPES, v)
}

/// CreateWebhookSubscription: the new subscription. `allow_http` admits
/// plain-http URLs.
pub fn new_subscription(
    req: &pb::CreateWebhookSubscriptionRequest,
    allow_http: bool,
) -> Result<NewSubscription, Violations> {
    let s = req
        .webhook_subscription
        .as_ref()
        .ok_or_else(|| Violations::one("webhook_subscription", "is required"))?;
    let mut v = Violations::default();
    let url = v.take(URL, WebhookUrl::parse(&s.url, allow_http));
    let event_types = event_types(&s.event_types, &mut v);
    match (url, event_types) {
        (Some(url), Some(event_types)) if v.is_empty() => Ok(NewSubscription { url, event_types }),
        _ => Err(v),
    }
}

/// UpdateWebhookSubscription: the fields its mask selects.
#[derive(Debug)]
pub struct UpdateSubscription {
    /// Which subscription.
    pub id: SubscriptionId,
    /// One validated update per mask path.
    pub updates: Vec<SubscriptionUpdate>,
    /// The etag the client read, if it sent one.
    pub etag: Option<String>,
}

impl UpdateSubscription {
    /// Converts the request; `allow_http` admits plain-http URLs.
    pub fn from_pb(
        req: &pb::UpdateWebhookSubscriptionRequest,
        allow_http: bool,
    ) -> Result<Self, Violations> {
        let s = req
            .webhook_subscription
            .as_ref()
            .ok_or_else(|| Violations::one("webhook_subscription", "is required"))?;
        let mut v = Violations::default();
        let id = convert::subscription_id(&s.name, "webhook_subscription.name", &mut v);
        let mut updates = Vec::new();
        match &req.update_mask {
            None => v.add("update_mask", "is required"),
            Some(mask) if mask.paths.is_empty() => {
                v.add("update_mask.paths", "must name at least one field")
            }
            Some(mask) => {
                for (i, path) in mask.paths.iter().enumerate() {
                    let field = format!("update_mask.paths[{i}]");
                    match path.as_str() {
                        "url" => {
                            if let Some(url) = v.take(URL, WebhookUrl::parse(&s.url, allow_http)) {
                                updates.push(SubscriptionUpdate::Url(url));
                            }
                        }
                        "event_types" => {
                            if let Some(t) = event_types(&s.event_types, &mut v) {
                                updates.push(SubscriptionUpdate::EventTypes(t));
                            }
                        }
                        "state" => {
                            if let Some(state) = v.required(
                                "webhook_subscription.state",
                                convert::state_from_pb(s.state),
                            ) {
                                updates.push(SubscriptionUpdate::State(state));
                            }
                        }
                        p if OUTPUT_ONLY.contains(&p) => {
                            v.add(field, format!("`{p}` is output only"));
                        }
                        p => v.add(
                            field,
                            format!("`{p}` is not an updatable field (url, event_types, state)"),
                        ),
                    }
                }
            }
        }
        match id {
            Some(id) if v.is_empty() => Ok(Self {
                id,
                updates,
                etag: etag(&s.etag),
            }),
            _ => Err(v),
        }
    }
}

/// DeleteWebhookSubscription: which subscription, at which etag.
pub fn delete(
    req: &pb::DeleteWebhookSubscriptionRequest,
) -> Result<(SubscriptionId, Option<String>), Violations> {
    Ok((subscription_id(&req.name, "name")?, etag(&req.etag)))
}
