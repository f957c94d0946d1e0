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
    /// Event type; for a message of a shared type (`rapport.type.v1.…`),
    /// `rapport.<producer>.<Type>` (see [`append_shared_insert`]). The relay
    /// of a service selects its rows by the `rapport.<service>.` prefix.
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

/// How many events one change may carry about one subject: the sequence of
/// an event is `version * SEQUENCE_STRIDE + n`, `n` counting the change's
/// earlier events about the same subject (see `EventEnvelope.sequence`).
pub const SEQUENCE_STRIDE: u64 = 16;

/// Wraps every event of one change in its envelope: a fresh UUIDv7 id, the
/// tenant, the time of the change, the trace context of the request, the
/// event's per-subject sequence and its causation and correlation ids.
///
/// - `version` gives the version of an event's subject after the change
///   (`None` when the subject has none: its events get sequence 0,
///   unknown). The sequence rule itself, `version * SEQUENCE_STRIDE + n`, is
///   applied here, once for every service: the caller states a fact of its
///   domain, and `n` depends on the subjects `encode` names.
/// - `causation` is the event whose handling made the change, `None` for a
///   change a request made. The correlation id is its correlation id;
///   without one, the trace id of `trace`, else the event's own id.
///
/// Fails, writing nothing, when a change carries more than
/// [`SEQUENCE_STRIDE`] events about one subject or a version is too large
/// for the rule: either would break the order consumers rely on.
///
/// Call it on the request's own task (the trace context is the current
/// span's), before handing the change to a writer task.
pub fn envelopes<Ev>(
    encode: Encode<Ev>,
    version: impl Fn(&Ev) -> Option<u64>,
    tenant: &str,
    occur_time: chrono::DateTime<chrono::Utc>,
    trace: &TraceContext,
    causation: Option<&EventEnvelope>,
    events: &[Ev],
) -> Result<Vec<EventEnvelope>, DbErr> {
    // The chain this change belongs to; a request's own chain starts here
    // (its events share the trace id, or each names itself).
    let chain = match causation {
        Some(cause) => Some(correlation_of(cause)),
        None => trace_id(&trace.0),
    };
    let mut out: Vec<EventEnvelope> = Vec::with_capacity(events.len());
    for event in events {
        let (subject, payload) = encode(event);
        let n = out.iter().filter(|e| e.subject == subject).count() as u64;
        let sequence = match version(event) {
            None => 0,
            Some(_) if n >= SEQUENCE_STRIDE => {
                return Err(DbErr::Custom(format!(
                    "more than {SEQUENCE_STRIDE} events about {subject} in one change"
                )));
            }
            Some(v) => {
                let base = v.checked_mul(SEQUENCE_STRIDE).ok_or_else(|| {
                    DbErr::Custom(format!("version {v} of {subject} is too large to sequence"))
                })?;
                base + n
            }
        };
        let id = uuid::Uuid::now_v7().to_string();
        out.push(EventEnvelope {
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
            sequence,
            causation_id: causation.map(|c| c.id.clone()).unwrap_or_default(),
            correlation_id: chain.clone().unwrap_or_else(|| id.clone()),
            id,
        });
    }
    Ok(out)
}

/// The correlation id of `envelope`; for one written before the field
/// existed, the one it would have had (its trace id, else its id).
fn correlation_of(envelope: &EventEnvelope) -> String {
    if !envelope.correlation_id.is_empty() {
        return envelope.correlation_id.clone();
    }
    trace_id(&envelope.traceparent).unwrap_or_else(|| envelope.id.clone())
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), in
/// lowercase; `None` when empty, malformed or all zeros (invalid).
fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let (Some(version), Some(id)) = (parts.next(), parts.next()) else {
        return None;
    };
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(version, 2)
        && !version.eq_ignore_ascii_case("ff")
        && hex(id, 32)
        && id.bytes().any(|b| b != b'0'))
    .then(|| id.to_ascii_lowercase())
}

/// The INSERT that appends `envelope`; run it in the transaction that makes
/// the change, so that a change and its event commit or roll back together.
pub fn append_insert(envelope: &EventEnvelope) -> sea_orm::sea_query::InsertStatement {
    insert_typed(envelope, envelope.r#type.clone())
}

fn insert_typed(
    envelope: &EventEnvelope,
    event_type: String,
) -> sea_orm::sea_query::InsertStatement {
    let occur = envelope
        .occur_time
        .as_ref()
        .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
        .unwrap_or_default();
    Entity::insert(ActiveModel {
        id: Set(envelope.id.clone()),
        tenant: Set(envelope.tenant.clone()),
        event_type: Set(event_type),
        subject: Set(envelope.subject.clone()),
        envelope: Set(envelope.encode_to_vec()),
        occur_time: Set(occur),
        publish_time: Set(None),
    })
    .into_query()
}

/// [`append_insert`] for an event whose message is a shared type that
/// several services publish (`rapport.type.v1.CustomerDataErased`): the row
/// is marked as `producer`'s, so that `producer`'s relay — which selects its
/// own rows by the `rapport.<service>.` prefix of the type, services being
/// free to share one outbox table — publishes it, and no other relay does.
/// The envelope keeps the message's real type.
pub fn append_shared_insert(
    envelope: &EventEnvelope,
    producer: &str,
) -> sea_orm::sea_query::InsertStatement {
    let name = envelope
        .r#type
        .rsplit_once('.')
        .map_or(envelope.r#type.as_str(), |(_, name)| name);
    insert_typed(envelope, format!("rapport.{producer}.{name}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A test event: its subject and that subject's version after the change.
    type Ev = (&'static str, Option<u64>);

    fn encode(event: &Ev) -> (String, prost_types::Any) {
        let payload = prost_types::Any {
            type_url: "type.googleapis.com/rapport.test.v1.Changed".into(),
            value: Vec::new(),
        };
        (event.0.to_owned(), payload)
    }

    fn wrap(
        trace: &str,
        causation: Option<&EventEnvelope>,
        events: &[Ev],
    ) -> Result<Vec<EventEnvelope>, DbErr> {
        envelopes(
            encode,
            |e: &Ev| e.1,
            "acme",
            chrono::Utc::now(),
            &(trace.to_owned(), String::new()),
            causation,
            events,
        )
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn traceparent(trace_id: &str) -> String {
        format!("00-{trace_id}-00f067aa0ba902b7-01")
    }

    #[test]
    fn sequences_count_events_per_subject_within_a_version() {
        let events = [
            ("things/a", Some(3)),
            ("things/a", Some(3)),
            ("things/b", Some(1)),
            ("things/a", Some(3)),
            ("things/c", None),
        ];
        let sequences: Vec<u64> = wrap("", None, &events)
            .unwrap()
            .iter()
            .map(|e| e.sequence)
            .collect();
        assert_eq!(sequences, [48, 49, 16, 50, 0]);
        // The next change of `things/a` (version 4) sorts after all of them.
        let next = wrap("", None, &[("things/a", Some(4))]).unwrap();
        assert_eq!(next[0].sequence, 64);
    }

    #[test]
    fn a_change_that_cannot_be_sequenced_is_refused() {
        let too_many = vec![("things/a", Some(1)); SEQUENCE_STRIDE as usize + 1];
        assert!(wrap("", None, &too_many[..SEQUENCE_STRIDE as usize]).is_ok());
        assert!(wrap("", None, &too_many).is_err());
        let largest = u64::MAX / SEQUENCE_STRIDE;
        assert_eq!(
            wrap("", None, &[("things/a", Some(largest))]).unwrap()[0].sequence,
            largest * SEQUENCE_STRIDE
        );
        assert!(wrap("", None, &[("things/a", Some(largest + 1))]).is_err());
    }

    #[test]
    fn a_traced_request_correlates_its_events_by_its_trace_id() {
        let events = wrap(&traceparent(TRACE), None, &[("things/a", Some(1)); 2]).unwrap();
        for e in &events {
            assert_eq!(e.correlation_id, TRACE);
            assert_eq!(e.causation_id, "");
        }
        let upper = wrap(
            &traceparent(&TRACE.to_ascii_uppercase()),
            None,
            &[("things/a", Some(1))],
        )
        .unwrap();
        assert_eq!(upper[0].correlation_id, TRACE);
    }

    #[test]
    fn an_untraced_request_correlates_each_event_by_its_own_id() {
        let invalid = [
            String::new(),
            traceparent(&"0".repeat(32)),
            format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            "00-not-a-trace".to_owned(),
        ];
        for trace in &invalid {
            for e in wrap(trace, None, &[("things/a", Some(1)), ("things/b", Some(1))]).unwrap() {
                assert_eq!(e.correlation_id, e.id, "traceparent {trace:?}");
                assert_eq!(e.causation_id, "");
            }
        }
    }

    #[test]
    fn an_event_caused_by_an_event_continues_its_chain() {
        let root = wrap("", None, &[("things/a", Some(1))]).unwrap().remove(0);
        // The handler's span may start a trace of its own: the chain wins.
        let other_trace = traceparent("0af7651916cd43dd8448eb211c80319c");
        let caused = wrap(&other_trace, Some(&root), &[("things/b", Some(2))]).unwrap();
        assert_eq!(caused[0].causation_id, root.id);
        assert_eq!(caused[0].correlation_id, root.id);
        let next = wrap("", Some(&caused[0]), &[("things/c", Some(1))]).unwrap();
        assert_eq!(next[0].causation_id, caused[0].id);
        assert_eq!(next[0].correlation_id, root.id);

        // A cause written before correlation ids existed: the one it would
        // have had.
        let old = EventEnvelope {
            id: "old".into(),
            traceparent: traceparent(TRACE),
            ..Default::default()
        };
        let caused = wrap("", Some(&old), &[("things/b", Some(1))]).unwrap();
        assert_eq!(caused[0].correlation_id, TRACE);
        let old = EventEnvelope {
            id: "old".into(),
            ..Default::default()
        };
        let caused = wrap(&other_trace, Some(&old), &[("things/b", Some(1))]).unwrap();
        assert_eq!(caused[0].correlation_id, "old");
    }
}
