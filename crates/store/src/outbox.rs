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

/// What a service's api layer makes of one domain event: the resource it is
/// about (`customers/{id}`) and the protobuf event message. Storage receives
/// domain events and an encoder of this shape, so it never imports the api.
pub type Encode<Ev> = fn(&Ev) -> (String, prost_types::Any);

/// The `(traceparent, tracestate)` of the request that makes a change.
pub type TraceContext = (String, String);

/// Wraps every event of one change in its envelope: a fresh UUIDv7 id, the
/// tenant, the time of the change and the trace context of the request.
///
/// Call it on the request's own task (the trace context is the current
/// span's), before handing the change to a writer task.
pub fn envelopes<Ev>(
    encode: Encode<Ev>,
    tenant: &str,
    occur_time: chrono::DateTime<chrono::Utc>,
    trace: &TraceContext,
    events: &[Ev],
) -> Vec<EventEnvelope> {
    events
        .iter()
        .map(|event| {
            let (subject, payload) = encode(event);
            EventEnvelope {
                id: uuid::Uuid::now_v7().to_string(),
                r#type: payload
                    .type_url
                    .rsplit_once('/')
                    .map_or(payload.type_url.as_str(), |(_, name)| name)
                    .to_owned(),
                tenant: tenant.to_owned(),
                subject,
                occur_time: Some(prost_types::Timestamp {
                    seconds: occur_time.timestamp(),
                    nanos: occur_time.timestamp_subsec_nanos() as i32,
                }),
                traceparent: trace.0.clone(),
                tracestate: trace.1.clone(),
                payload: Some(payload),
            }
        })
        .collect()
}

/// The INSERT that appends `envelope`; run it in the transaction that makes
/// the change, so that a change and its event commit or roll back together.
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
