//! Domain events → protobuf event messages, for the outbox. Only ids and
//! facts cross this line, never personal data. Storage is handed [`encode`]
//! by `lib.rs` and wraps each message in the standard envelope (id, tenant,
//! time, trace context, per-subject sequence, causation and correlation).
//! The subject [`encode`] names is always the event's
//! [`DomainEvent::customer`], whose version storage sequences it by.
use prost::Name;
use rapport_proto::profiles as pb;

use super::convert::{channel_to_pb, customer_name, purpose_to_pb, stage_to_pb, status_to_pb};
use crate::domain::{DomainEvent, ErasureReceiptId};

/// The subject and the protobuf message of one domain event.
pub fn encode(event: &DomainEvent) -> (String, prost_types::Any) {
    match event {
        DomainEvent::Created { customer, stage } => wrap(
            customer_name(*customer),
            &pb::CustomerCreated {
                customer: customer_name(*customer),
                lifecycle_stage: stage_to_pb(Some(*stage)) as i32,
            },
        ),
        DomainEvent::Updated {
            customer,
            changed_paths,
        } => wrap(
            customer_name(*customer),
            &pb::CustomerUpdated {
                customer: customer_name(*customer),
                changed_paths: changed_paths.clone(),
            },
        ),
        DomainEvent::Merged {
            survivor,
            merged,
            record,
        } => wrap(
            customer_name(*survivor),
            &pb::CustomersMerged {
                survivor: customer_name(*survivor),
                merged: customer_name(*merged),
                merge_record: format!("mergeRecords/{record}"),
            },
        ),
        DomainEvent::Erased { customer, receipt } => wrap(
            customer_name(*customer),
            &pb::CustomerErased {
                customer: customer_name(*customer),
                erasure_receipt: format!("erasureReceipts/{receipt}"),
            },
        ),
        DomainEvent::ErasureCompleted { customer, receipt } => wrap(
            customer_name(*customer),
            &pb::ErasureCompleted {
                customer: customer_name(*customer),
                erasure_receipt: format!("erasureReceipts/{receipt}"),
            },
        ),
        DomainEvent::BirthdayReached { customer, year } => wrap(
            customer_name(*customer),
            &pb::BirthdayReached {
                customer: customer_name(*customer),
                year: *year,
            },
        ),
        DomainEvent::ConsentChanged {
            customer,
            channel,
            purpose,
            status,
        } => wrap(
            customer_name(*customer),
            &pb::ConsentChanged {
                customer: customer_name(*customer),
                channel: channel_to_pb(Some(*channel)) as i32,
                purpose: purpose_to_pb(*purpose) as i32,
                status: status_to_pb(*status) as i32,
            },
        ),
        DomainEvent::StageChanged { customer, from, to } => wrap(
            customer_name(*customer),
            &pb::LifecycleStageChanged {
                customer: customer_name(*customer),
                from_stage: stage_to_pb(Some(*from)) as i32,
                to_stage: stage_to_pb(Some(*to)) as i32,
            },
        ),
    }
}

/// Reads another service's `CustomerDataErased` (a shared
/// `rapport.type.v1` message): the receipt it confirms and who confirms.
pub fn decode_confirmation(
    envelope: &rapport_proto::types::EventEnvelope,
) -> Result<(ErasureReceiptId, String), String> {
    use prost::Message as _;
    use rapport_proto::types::CustomerDataErased;
    let payload = envelope
        .payload
        .as_ref()
        .filter(|p| p.type_url == CustomerDataErased::type_url())
        .ok_or_else(|| format!("not a CustomerDataErased: {}", envelope.r#type))?;
    let event = CustomerDataErased::decode(payload.value.as_slice())
        .map_err(|e| format!("CustomerDataErased does not decode: {e}"))?;
    let receipt = event
        .erasure_receipt
        .strip_prefix("erasureReceipts/")
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .map(ErasureReceiptId)
        .ok_or_else(|| {
            format!(
                "erasure_receipt {:?} is not a receipt name",
                event.erasure_receipt
            )
        })?;
    if event.service.is_empty() {
        return Err("CustomerDataErased without a service".into());
    }
    Ok((receipt, event.service))
}

fn wrap<M: Name>(subject: String, message: &M) -> (String, prost_types::Any) {
    let payload = prost_types::Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    };
    (subject, payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Channel, ConsentPurpose, ConsentStatus, CustomerId, ErasureReceiptId, LifecycleStage,
        MergeRecordId,
    };

    #[test]
    fn the_subject_is_the_customer_the_event_is_about() {
        let (customer, other) = (CustomerId::generate(), CustomerId::generate());
        let stage = LifecycleStage::Awareness;
        let events = [
            DomainEvent::Created { customer, stage },
            DomainEvent::Updated {
                customer,
                changed_paths: vec!["display_name".into()],
            },
            DomainEvent::Merged {
                survivor: customer,
                merged: other,
                record: MergeRecordId::generate(),
            },
            DomainEvent::Erased {
                customer,
                receipt: ErasureReceiptId::generate(),
            },
            DomainEvent::ConsentChanged {
                customer,
                channel: Channel::Email,
                purpose: ConsentPurpose::Marketing,
                status: ConsentStatus::Granted,
            },
            DomainEvent::StageChanged {
                customer,
                from: stage,
                to: LifecycleStage::Retention,
            },
        ];
        for event in &events {
            assert_eq!(event.customer(), customer, "{event:?}");
            assert_eq!(encode(event).0, customer_name(customer), "{event:?}");
        }
    }
}
