//! sea-orm storage of the profiles domain: the only module that speaks SQL.
//!
//! A customer is one row: queryable columns (state, stage, display name,
//! times, search text) plus a JSON document with the rest of the profile.
//! Identities and tags have their own tables so the database enforces
//! identity uniqueness per tenant and tag filters use an index.
//!
//! Storage never sees the transport: domain events reach the outbox through
//! an encoder the service's composition (`lib.rs`) hands in.
// Beside the repository, writing rows directly: the bulk loader (public as
// `crate::seed`) and the write ceilings (`crate::ceiling`, feature `bench`).
pub(crate) mod bulk;
#[cfg(feature = "bench")]
pub(crate) mod ceiling;
pub(crate) mod cycle;
mod entities;
mod read;
mod rows;
mod write;

use rows::to_row;

use rapport_events::relay::Wake;
use rapport_store::{Db, group_commit::GroupCommit, idempotency, outbox::Encode};
use rapport_usecase::{Idempotency, Prior, Priors};

use crate::domain::{DomainEvent, Error, Tenant, repository::CommitError};
use rows::{db_err, db_error};
use write::Prepared;

/// The sea-orm repository.
#[derive(Debug, Clone)]
pub struct SqlRepository {
    db: Db,
    /// SQLite's one writer, folding concurrent commits into one transaction;
    /// `None` on PostgreSQL, where each commit has its own transaction.
    group: Option<GroupCommit<Prepared, CommitError>>,
    /// Domain event → protobuf event, for the outbox.
    encode: Encode<DomainEvent>,
    /// Wakes the outbox relay after a commit with events.
    wake: Wake,
}

impl SqlRepository {
    /// A repository over `db`, writing events to the outbox as `encode`
    /// makes them and waking the outbox relay through `wake`. Spawns SQLite's writer task on the current tokio runtime.
    pub fn new(db: Db, encode: Encode<DomainEvent>, wake: Wake) -> Self {
        let group = (db.backend() == sea_orm::DatabaseBackend::Sqlite).then(|| {
            GroupCommit::spawn(db.writer.clone(), write::apply_boxed, |e| {
                CommitError::Other(crate::domain::repository::Clash::Failed(db_error(e)))
            })
        });
        Self {
            db,
            group,
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
