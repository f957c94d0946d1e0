//! The dead-letter admin API every consuming service serves
//! (`ListDeadLetters`, `ReplayDeadLetter` in its own gRPC service, scope
//! `admin`): one implementation here, each service's handler delegates to
//! [`DeadLetterAdmin`] in two lines.
//!
//! Through the gateway a caller sees and replays only its own tenant's dead
//! letters; a message that did not decode has no tenant and is left to the
//! operator's `rapport events dead-letters` (which sees every tenant's).
//! Resource names are `consumers/{consumer}/deadLetters/{event_id}`; a list's
//! parent is `consumers/{consumer}` or `consumers/-` for every consumer of
//! the service.
use rapport_kit::Tenant;
use rapport_kit::{ErrorBuilder, FieldViolations, PageTokens, error::invalid_argument, page};
use rapport_proto::types::DeadLetter;
use rapport_store::Db;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tonic::{Code, Status};

use crate::consume::{self, Applied, ConsumeError, Handler, HandlerError, dead_letters};

const LIST_DEFAULT: u32 = 50;
const LIST_MAX: u32 = 500;

/// Where a page of dead letters ends: (park time, consumer, event id).
type Cursor = (i64, String, String);

/// A service's dead letters, as its admin RPCs see them.
pub struct DeadLetterAdmin {
    db: Db,
    handlers: Vec<(&'static str, Handler)>,
    tokens: PageTokens,
    domain: &'static str,
}

impl std::fmt::Debug for DeadLetterAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let consumers: Vec<_> = self.handlers.iter().map(|(n, _)| *n).collect();
        f.debug_struct("DeadLetterAdmin")
            .field("consumers", &consumers)
            .finish_non_exhaustive()
    }
}

impl DeadLetterAdmin {
    /// The dead letters in `db` of the consumers `handlers` names (the
    /// service's `event_handlers()`), with page tokens signed by `tokens`
    /// and errors in the service's error `domain`.
    pub fn new(
        db: Db,
        handlers: Vec<(&'static str, Handler)>,
        tokens: PageTokens,
        domain: &'static str,
    ) -> Self {
        Self {
            db,
            handlers,
            tokens,
            domain,
        }
    }

    /// `ListDeadLetters`: a page of `tenant`'s dead letters under `parent`,
    /// oldest first, and the next page's token (empty on the last page).
    pub async fn list(
        &self,
        tenant: &Tenant,
        parent: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<DeadLetter>, String), Status> {
        let limit = page::page_size(page_size, LIST_DEFAULT, LIST_MAX, self.domain)?;
        let consumer = match parent.strip_prefix("consumers/") {
            Some("-") => None,
            Some(c) if self.knows(c) => Some(c),
            _ => {
                return Err(self.invalid(
                    "parent",
                    format!(
                        "must be `consumers/-` or `consumers/{{consumer}}` of {}",
                        self.consumers()
                    ),
                ));
            }
        };
        // Tokens are bound to the parent: one made for another consumer's
        // list is refused rather than read as this one's position.
        let scope = format!("deadLetters;{parent}");
        let after: Option<Cursor> = self
            .tokens
            .decode(tenant, &scope, page_token, "page_token")?;
        let mut q = dead_letters::Entity::find()
            .filter(dead_letters::Column::Tenant.eq(tenant.as_str()))
            .order_by_asc(dead_letters::Column::ParkTime)
            .order_by_asc(dead_letters::Column::Consumer)
            .order_by_asc(dead_letters::Column::EventId)
            .limit(u64::from(limit) + 1);
        if let Some(c) = consumer {
            q = q.filter(dead_letters::Column::Consumer.eq(c));
        }
        if let Some((time, consumer, event_id)) = after {
            use dead_letters::Column as C;
            // After (time, consumer, event id) in that order.
            q = q.filter(
                Condition::any().add(C::ParkTime.gt(time)).add(
                    Condition::all().add(C::ParkTime.eq(time)).add(
                        Condition::any().add(C::Consumer.gt(consumer.as_str())).add(
                            Condition::all()
                                .add(C::Consumer.eq(consumer.as_str()))
                                .add(C::EventId.gt(event_id)),
                        ),
                    ),
                ),
            );
        }
        let mut rows = q
            .all(&self.db.reader)
            .await
            .map_err(|e| self.db_error(&e))?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last()
                .map(|r| {
                    let c: Cursor = (r.park_time, r.consumer.clone(), r.event_id.clone());
                    self.tokens.encode(tenant, &scope, &c)
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((rows.iter().map(to_proto).collect(), next))
    }

    /// `ReplayDeadLetter`: runs `tenant`'s dead letter `name` through its
    /// consumer again; `Ok(true)` when applied now, `Ok(false)` when it had
    /// been applied before (either way it leaves the dead letters).
    pub async fn replay(&self, tenant: &Tenant, name: &str) -> Result<bool, Status> {
        let parsed = name
            .strip_prefix("consumers/")
            .and_then(|rest| rest.split_once("/deadLetters/"))
            .filter(|(c, id)| !c.is_empty() && !id.is_empty() && !id.contains('/'));
        let Some((consumer, event_id)) = parsed else {
            return Err(self.invalid(
                "name",
                "must be `consumers/{consumer}/deadLetters/{event_id}`".into(),
            ));
        };
        let Some((_, handler)) = self.handlers.iter().find(|(n, _)| *n == consumer) else {
            return Err(self.invalid(
                "name",
                format!("the consumer must be one of {}", self.consumers()),
            ));
        };
        let not_found = || {
            ErrorBuilder::new(Code::NotFound, self.domain, "DEAD_LETTER_NOT_FOUND")
                .message("no such dead letter")
                .meta("name", name)
                .build()
        };
        // Another tenant's dead letter is not found, as if it did not exist.
        let owner = dead_letters::Entity::find_by_id((consumer.to_owned(), event_id.to_owned()))
            .one(&self.db.reader)
            .await
            .map_err(|e| self.db_error(&e))?;
        match owner {
            Some(row) if row.tenant == tenant.as_str() => {}
            _ => return Err(not_found()),
        }
        match consume::replay(&self.db, consumer, event_id, handler).await {
            Ok(Some(applied)) => Ok(applied == Applied::Now),
            // Replayed by a concurrent call meanwhile.
            Ok(None) => Err(not_found()),
            Err(ConsumeError::Handler(HandlerError::Retry(why) | HandlerError::Reject(why))) => {
                tracing::info!(%consumer, %event_id, error = %why, "replayed dead letter failed again");
                Err(
                    ErrorBuilder::new(Code::FailedPrecondition, self.domain, "EVENT_REJECTED")
                        .message(
                            "the consumer failed again; the dead letter stays with the new error",
                        )
                        .meta("name", name)
                        .build(),
                )
            }
            Err(ConsumeError::Db(e)) => Err(self.db_error(&e)),
        }
    }

    fn knows(&self, consumer: &str) -> bool {
        self.handlers.iter().any(|(n, _)| *n == consumer)
    }

    fn consumers(&self) -> String {
        let names: Vec<_> = self
            .handlers
            .iter()
            .map(|(n, _)| format!("`{n}`"))
            .collect();
        names.join(", ")
    }

    fn invalid(&self, field: &str, why: String) -> Status {
        invalid_argument(self.domain, FieldViolations::single(field, why))
    }

    /// A database failure: retryable, and without its text (which may hold
    /// SQL) in the answer.
    fn db_error(&self, e: &sea_orm::DbErr) -> Status {
        tracing::warn!(error = %e, "dead letters: database unavailable");
        ErrorBuilder::new(Code::Unavailable, self.domain, "DATABASE_UNAVAILABLE")
            .message("the database is unavailable; retry later")
            .build()
    }
}

/// The API's view of a dead letter: ids and the error, not the payload.
fn to_proto(r: &dead_letters::Model) -> DeadLetter {
    let secs = r.park_time.div_euclid(1_000_000);
    let nanos = (r.park_time.rem_euclid(1_000_000) * 1_000) as i32;
    DeadLetter {
        name: format!("consumers/{}/deadLetters/{}", r.consumer, r.event_id),
        consumer: r.consumer.clone(),
        event_id: r.event_id.clone(),
        event_type: r.event_type.clone(),
        error: r.error.clone(),
        attempts: r.attempts,
        park_time: Some(prost_types::Timestamp {
            seconds: secs,
            nanos,
        }),
    }
}
