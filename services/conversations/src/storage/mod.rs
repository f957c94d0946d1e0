//! sea-orm storage of the conversations domain: the only module that speaks
//! SQL.
//!
//! Each resource is one row: the columns queries filter on plus a JSON
//! document of the rest. Messages are unique per (inbox, external id), case
//! numbers per tenant, and the thread of each (inbox, customer) is a row of
//! its own, so that concurrent first messages start one conversation.
//!
//! Storage never sees the transport: domain events reach the outbox through
//! an encoder the service's composition (`lib.rs`) hands in.
pub mod check_ins;
pub mod delivery;
mod entities;
pub(crate) mod erasure;
mod marks;
pub(crate) mod merge;
pub(crate) mod metrics;
pub mod promises;
mod read;
mod rows;
pub mod sla;
mod write;

use rapport_events::relay::Wake;
use rapport_store::{Db, group_commit::Writer, idempotency, outbox::Encode};
use rapport_usecase::{Idempotency, Prior, Priors};

use crate::domain::{DomainEvent, Error, Tenant, repository::CommitError};
use rows::db_err;
use write::Prepared;

/// The sea-orm repository.
#[derive(Debug, Clone)]
pub struct SqlRepository {
    db: Db,
    /// Commits: SQLite's one writer folding concurrent commits into one
    /// transaction, or a transaction each on PostgreSQL.
    writer: Writer<Prepared, CommitError>,
    /// Domain event → protobuf event, for the outbox.
    encode: Encode<DomainEvent>,
    /// Wakes the outbox relay after a commit with events.
    wake: Wake,
}

impl SqlRepository {
    /// A repository over `db`, writing events to the outbox as `encode`
    /// makes them and waking the outbox relay through `wake`. Spawns
    /// SQLite's writer task on the current tokio runtime.
    pub fn new(db: Db, encode: Encode<DomainEvent>, wake: Wake) -> Self {
        Self {
            writer: Writer::new(&db, write::apply_boxed, write::on_db_error),
            db,
            encode,
            wake,
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
