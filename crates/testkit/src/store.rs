//! Readers of the tables every service keeps through `rapport_store` (the
//! outbox and stored idempotent replies), so tests can check what a call
//! wrote besides its answer.

use rapport_proto::types::EventEnvelope;
use rapport_store::Db;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};

/// Outbox events of `tenant` about `subject`, oldest first.
pub async fn outbox_events(db: &Db, tenant: &str, subject: &str) -> Vec<EventEnvelope> {
    rapport_store::outbox::for_subject(&db.reader, tenant, subject)
        .await
        .expect("reading the outbox")
}

/// Every raw outbox row of `tenant`.
pub async fn outbox_rows(db: &Db, tenant: &str) -> Vec<rapport_store::outbox::Model> {
    rapport_store::outbox::Entity::find()
        .filter(rapport_store::outbox::Column::Tenant.eq(tenant))
        .all(&db.reader)
        .await
        .expect("reading the outbox table")
}

/// Every raw idempotency row of `tenant`.
pub async fn idempotency_rows(db: &Db, tenant: &str) -> Vec<rapport_store::idempotency::Model> {
    rapport_store::idempotency::Entity::find()
        .filter(rapport_store::idempotency::Column::Tenant.eq(tenant))
        .all(&db.reader)
        .await
        .expect("reading the idempotency table")
}

/// Decodes the payload of an outbox envelope.
pub fn payload<M: prost::Message + Default>(envelope: &EventEnvelope) -> M {
    let any = envelope.payload.as_ref().expect("envelope has a payload");
    M::decode(any.value.as_slice()).expect("payload decodes")
}

/// The event types of `envelopes`, in order.
pub fn event_types(envelopes: &[EventEnvelope]) -> Vec<String> {
    envelopes.iter().map(|e| e.r#type.clone()).collect()
}
