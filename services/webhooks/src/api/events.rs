//! Events as partners receive them. Each event reaches the service as a
//! `rapport.type.v1.EventEnvelope` whose payload is a protobuf message; a
//! delivery's body is the event as JSON, with the payload in the proto3
//! JSON mapping (prost-reflect over `rapport_proto::FILE_DESCRIPTOR_SET`):
//!
//! ```json
//! {"type": "rapport.profiles.v1.CustomerCreated", "subject": "customers/…",
//!  "tenant": "acme", "time": "2026-01-01T12:00:00.123456Z",
//!  "data": {"customer": "customers/…", "lifecycleStage": "LIFECYCLE_STAGE_AWARENESS"}}
//! ```
//!
//! The event types partners may subscribe to are the messages of every
//! `rapport/<service>/v1/events.proto`.
use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use prost::{Message as _, Name as _};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use rapport_kit::convert::{from_ts, ts};
use rapport_proto::{types::EventEnvelope, webhooks as pb};
use serde::Serialize;

use super::convert::subscription_name;
use crate::domain::{Rendered, SubscriptionId, Tenant};

/// Longest event id and type stored with a delivery.
const MAX_ID: usize = 64;
const MAX_TYPE: usize = 128;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(rapport_proto::FILE_DESCRIPTOR_SET)
        .expect("the build's own descriptor set decodes")
});

static EVENT_TYPES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut types: Vec<String> = POOL
        .files()
        .filter(|f| f.name().starts_with("rapport/") && f.name().ends_with("/events.proto"))
        .flat_map(|f| {
            f.messages()
                .map(|m| m.full_name().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    types.sort();
    types
});

/// Every event type a subscription may name.
pub fn event_types() -> &'static [String] {
    &EVENT_TYPES
}

/// The body of a delivery.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    subject: &'a str,
    tenant: &'a str,
    time: String,
    data: serde_json::Value,
}

/// `envelope` as it is delivered; `Err` says why it cannot be (unknown
/// type, undecodable payload): such an event is parked, to be replayed once
/// this service knows it.
pub fn render(envelope: &EventEnvelope) -> Result<Rendered, String> {
    if envelope.id.is_empty() || envelope.id.len() > MAX_ID {
        return Err("the event id is empty or too long".to_owned());
    }
    if envelope.r#type.len() > MAX_TYPE {
        return Err("the event type is too long".to_owned());
    }
    let payload = envelope
        .payload
        .as_ref()
        .ok_or_else(|| "the event has no payload".to_owned())?;
    let name = payload
        .type_url
        .rsplit_once('/')
        .map_or(payload.type_url.as_str(), |(_, name)| name);
    if name != envelope.r#type {
        return Err(format!(
            "the payload is a {name}, the envelope says {}",
            envelope.r#type
        ));
    }
    let descriptor = POOL
        .get_message_by_name(name)
        .ok_or_else(|| format!("unknown event type {name}"))?;
    let message = DynamicMessage::decode(descriptor, payload.value.as_slice())
        .map_err(|e| format!("the {name} payload does not decode: {e}"))?;
    let data = message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|e| format!("the {name} payload has no JSON form: {e}"))?;
    let time: DateTime<Utc> = envelope
        .occur_time
        .as_ref()
        .and_then(from_ts)
        .ok_or_else(|| "the event has no valid time".to_owned())?;
    let body = serde_json::to_string(&Body {
        event_type: &envelope.r#type,
        subject: &envelope.subject,
        tenant: &envelope.tenant,
        time: time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        data,
    })
    .map_err(|e| format!("the body does not serialize: {e}"))?;
    Ok(Rendered {
        id: envelope.id.clone(),
        event_type: envelope.r#type.clone(),
        body,
    })
}

/// A new `rapport.webhooks.v1.WebhookTest` event for `subscription`,
/// rendered as every event is.
pub fn test_event(tenant: &Tenant, subscription: SubscriptionId, now: DateTime<Utc>) -> Rendered {
    let name = subscription_name(subscription);
    let payload = pb::WebhookTest {
        webhook_subscription: name.clone(),
    };
    let envelope = EventEnvelope {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: pb::WebhookTest::full_name(),
        tenant: tenant.to_string(),
        subject: name,
        occur_time: Some(ts(now)),
        payload: Some(prost_types::Any {
            type_url: pb::WebhookTest::type_url(),
            value: payload.encode_to_vec(),
        }),
        ..Default::default()
    };
    render(&envelope).expect("a WebhookTest always renders")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope<M: prost::Name>(message: &M) -> EventEnvelope {
        EventEnvelope {
            id: "0192e0c0-0000-7000-8000-000000000001".into(),
            r#type: M::full_name(),
            tenant: "acme".into(),
            subject: "customers/c1".into(),
            occur_time: Some(prost_types::Timestamp {
                seconds: 1_767_268_800,
                nanos: 123_456_000,
            }),
            payload: Some(prost_types::Any {
                type_url: M::type_url(),
                value: message.encode_to_vec(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_event_renders_as_proto3_json() {
        let created = rapport_proto::profiles::CustomerCreated {
            customer: "customers/c1".into(),
            lifecycle_stage: rapport_proto::profiles::LifecycleStage::Awareness as i32,
        };
        let rendered = render(&envelope(&created)).unwrap();
        assert_eq!(rendered.event_type, "rapport.profiles.v1.CustomerCreated");
        let body: serde_json::Value = serde_json::from_str(&rendered.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "rapport.profiles.v1.CustomerCreated",
                "subject": "customers/c1",
                "tenant": "acme",
                "time": "2026-01-01T12:00:00.123456Z",
                "data": {"customer": "customers/c1", "lifecycleStage": "LIFECYCLE_STAGE_AWARENESS"},
            })
        );
    }

    #[test]
    fn events_that_cannot_be_rendered_say_why() {
        let created = rapport_proto::profiles::CustomerCreated::default();
        let mut unknown = envelope(&created);
        unknown.r#type = "rapport.nope.v1.Gone".into();
        unknown.payload.as_mut().unwrap().type_url =
            "type.googleapis.com/rapport.nope.v1.Gone".into();
        assert!(render(&unknown).unwrap_err().contains("unknown event type"));
        let mut mismatched = envelope(&created);
        mismatched.r#type = "rapport.profiles.v1.CustomerErased".into();
        assert!(render(&mismatched).is_err());
        let mut garbage = envelope(&created);
        garbage.payload.as_mut().unwrap().value = vec![0xff, 0xff];
        assert!(render(&garbage).unwrap_err().contains("does not decode"));
        let mut bare = envelope(&created);
        bare.payload = None;
        assert!(render(&bare).is_err());
    }

    #[test]
    fn the_event_types_are_those_of_events_protos() {
        let types = event_types();
        for t in [
            "rapport.profiles.v1.CustomerCreated",
            "rapport.profiles.v1.CustomerErased",
            "rapport.webhooks.v1.WebhookTest",
        ] {
            assert!(types.iter().any(|k| k == t), "{t} missing from {types:?}");
        }
        assert!(!types.iter().any(|k| k == "rapport.profiles.v1.Customer"));
    }
}
