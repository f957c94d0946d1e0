//! Domain events → protobuf event messages, for the outbox. Only ids and
//! facts cross this line, never personal data. Storage is handed [`encode`]
//! by `lib.rs` and wraps each message in the standard envelope (id, tenant,
//! time, trace context, per-subject sequence, causation and correlation).
//! The subject [`encode`] names is always the event's
//! [`DomainEvent::customer`], whose version storage sequences it by.
use prost::Name;
use rapport_proto::profiles as pb;

use super::convert::{channel_to_pb, customer_name, purpose_to_pb, stage_to_pb, status_to_pb};
use crate::domain::DomainEvent;

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
