//! sea-orm storage of the webhooks domain: the only module that speaks SQL.
//!
//! Subscriptions and deliveries are one row each. A pending delivery's next
//! attempt is a durable timer (`rapport_events::timers`, key
//! `delivery:{id}`) written in the same transaction as the delivery, so a
//! delivery is never pending without an attempt to come. Two handlers run
//! inside transactions the event platform opens: [`fanout`] (a consumed
//! event becomes deliveries) and [`claims`] (a due timer claims an
//! attempt).
//!
//! Storage never sees the transport: consumed events are rendered by a
//! function the service's composition (`lib.rs`) hands in.
pub(crate) mod claims;
mod entities;
pub(crate) mod fanout;
mod read;
mod rows;
mod write;

use rapport_store::{Db, group_commit::Writer, idempotency};
use rapport_usecase::{Idempotency, Prior, Priors};

use crate::domain::{
    DeliveryId, Error, Tenant,
    repository::{ChangeSet, CommitError},
};
use rows::db_err;

/// The timer kind of a delivery's next attempt.
pub(crate) const ATTEMPT_TIMER: &str = "webhook_delivery";

/// The timer key of a delivery's next attempt.
fn timer_key(id: impl std::fmt::Display) -> String {
    format!("delivery:{id}")
}

/// The delivery a timer key names.
fn delivery_of_key(key: &str) -> Option<DeliveryId> {
    key.strip_prefix("delivery:")
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .map(DeliveryId)
}

/// The sea-orm repository.
#[derive(Debug, Clone)]
pub struct SqlRepository {
    db: Db,
    /// Commits: SQLite's one writer folding concurrent commits into one
    /// transaction, or a transaction each on PostgreSQL.
    writer: Writer<ChangeSet, CommitError>,
}

impl SqlRepository {
    /// A repository over `db`. Spawns SQLite's writer task on the current
    /// tokio runtime.
    pub fn new(db: Db) -> Self {
        Self {
            writer: Writer::new(&db, write::apply_boxed, write::on_db_error),
            db,
        }
    }
}

impl Priors for SqlRepository {
    type Error = Error;

    async fn prior(&self, tenant: &Tenant, key: &Idempotency) -> Result<Option<Prior>, Error> {
        idempotency::find(&self.db.reader, tenant, key)
            .await
            .map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_name_their_delivery() {
        let id = DeliveryId::generate();
        assert_eq!(delivery_of_key(&timer_key(id)), Some(id));
        assert_eq!(delivery_of_key("sla:x"), None);
        assert_eq!(delivery_of_key("delivery:not-a-uuid"), None);
    }
}
