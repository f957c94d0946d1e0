//! Domain events → protobuf event messages in the standard envelope, for the
//! outbox. Only ids and facts cross this line, never personal data.
use chrono::{DateTime, Utc};
use rapport_proto::{profiles as pb, types::EventEnvelope};

use crate::{
    api::convert::{channel_to_pb, purpose_to_pb, stage_to_pb, status_to_pb},
    domain::{DomainEvent, Tenant},
};

fn customer_name(id: impl std::fmt::Display) -> String {
    format!("customers/{id}")
}

/// Wraps one domain event, stamped with the current trace context.
pub fn envelope(tenant: &Tenant, at: DateTime<Utc>, event: &DomainEvent) -> EventEnvelope {
    let trace = rapport_telemetry::propagation::current_traceparent();
    let env = |subject: String| (tenant.as_str(), subject, at, trace.clone());
    match event {
        DomainEvent::Created { customer, stage } => {
            let (t, s, at, tr) = env(customer_name(customer));
            rapport_store::outbox::envelope(
                t,
                s,
                at,
                tr,
                &pb::CustomerCreated {
                    customer: customer_name(customer),
                    lifecycle_stage: stage_to_pb(Some(*stage)) as i32,
                },
            )
        }
        DomainEvent::Updated {
            customer,
            changed_paths,
        } => {
            let (t, s, at, tr) = env(customer_name(customer));
            rapport_store::outbox::envelope(
                t,
                s,
                at,
                tr,
                &pb::CustomerUpdated {
                    customer: customer_name(customer),
                    changed_paths: changed_paths.clone(),
                },
            )
        }
        DomainEvent::Merged {
            survivor,
            merged,
            record,
        } => {
            let (t, s, at, tr) = env(customer_name(survivor));
            rapport_store::outbox::envelope(
                t,
                s,
                at,
                tr,
                &pb::CustomersMerged {
                    survivor: customer_name(survivor),
                    merged: customer_name(merged),
                    merge_record: format!("mergeRecords/{record}"),
                },
            )
        }
        DomainEvent::Erased { customer, receipt } => {
            let (t, s, at, tr) = env(customer_name(customer));
            rapport_store::outbox::envelope(
                t,
                s,
                at,
                tr,
                &pb::CustomerErased {
                    customer: customer_name(customer),
                    erasure_receipt: format!("erasureReceipts/{receipt}"),
                },
            )
        }
        DomainEvent::ConsentChanged {
            customer,
            channel,
            purpose,
            status,
        } => {
            let (t, s, at, tr) = env(customer_name(customer));
            rapport_store::outbox::envelope(
                t,
                s,
                at,
                tr,
                &pb::ConsentChanged {
                    customer: customer_name(customer),
                    channel: channel_to_pb(Some(*channel)) as i32,
                    purpose: purpose_to_pb(*purpose) as i32,
                    status: status_to_pb(*status) as i32,
                },
            )
        }
        DomainEvent::StageChanged { customer, from, to } => {
            let (t, s, at, tr) = env(customer_name(customer));
            rapport_store::outbox::envelope(
                t,
                s,
                at,
                tr,
                &pb::LifecycleStageChanged {
                    customer: customer_name(customer),
                    from_stage: stage_to_pb(Some(*from)) as i32,
                    to_stage: stage_to_pb(Some(*to)) as i32,
                },
            )
        }
    }
}
