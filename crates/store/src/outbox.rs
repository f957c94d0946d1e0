//! The transactional outbox: a service writes its domain events here in the
//! same transaction as the change they describe, so a change and its event
//! commit or roll back together. A relay (a later piece) publishes the rows.
use prost::Message as _;
use rapport_proto::types::EventEnvelope;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, QueryTrait, entity::prelude::*};

/// Outbox row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// Event id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Event type.
    pub event_type: String,
    /// Subject resource name.
    pub subject: String,
    /// Encoded envelope.
    pub envelope: Vec<u8>,
    /// µs since the epoch.
    pub occur_time: i64,
    /// µs since the epoch, NULL until published.
    pub publish_time: Option<i64>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Appends one event. Call it on the transaction that makes the change.
pub async fn append<C: ConnectionTrait>(conn: &C, envelope: &EventEnvelope) -> Result<(), DbErr> {
    conn.execute(&append_insert(envelope)).await?;
    Ok(())
}

/// The INSERT [`append`] runs, for a caller that sends it together with the
/// statements of the change.
pub fn append_insert(envelope: &EventEnvelope) -> sea_orm::sea_query::InsertStatement {
    let occur = envelope
        .occur_time
        .as_ref()
        .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
        .unwrap_or_default();
    Entity::insert(ActiveModel {
        id: Set(envelope.id.clone()),
        tenant: Set(envelope.tenant.clone()),
        event_type: Set(envelope.r#type.clone()),
        subject: Set(envelope.subject.clone()),
        envelope: Set(envelope.encode_to_vec()),
        occur_time: Set(occur),
        publish_time: Set(None),
    })
    .into_query()
}

/// Builds an envelope around `payload` with a fresh UUIDv7 id and the current
/// trace context.
pub fn envelope<M: prost::Name>(
    tenant: &str,
    subject: String,
    occur_time: chrono::DateTime<chrono::Utc>,
    traceparent: (String, String),
    payload: &M,
) -> EventEnvelope {
    EventEnvelope {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: M::full_name(),
        tenant: tenant.to_owned(),
        subject,
        occur_time: Some(prost_types::Timestamp {
            seconds: occur_time.timestamp(),
            nanos: occur_time.timestamp_subsec_nanos() as i32,
        }),
        traceparent: traceparent.0,
        tracestate: traceparent.1,
        payload: Some(prost_types::Any {
            type_url: M::type_url(),
            value: payload.encode_to_vec(),
        }),
    }
}

/// Events of `tenant` for `subject`, oldest first (tests and diagnostics).
pub async fn for_subject<C: ConnectionTrait>(
    conn: &C,
    tenant: &str,
    subject: &str,
) -> Result<Vec<EventEnvelope>, DbErr> {
    use sea_orm::{QueryFilter, QueryOrder};
    let rows = Entity::find()
        .filter(Column::Tenant.eq(tenant))
        .filter(Column::Subject.eq(subject))
        .order_by_asc(Column::Id)
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|r| {
            EventEnvelope::decode(r.envelope.as_slice())
                .map_err(|e| DbErr::Custom(format!("corrupt outbox row {}: {e}", r.id)))
        })
        .collect()
}
