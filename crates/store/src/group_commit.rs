//! Group commit for SQLite's one writer connection: concurrent write
//! transactions are folded into one database transaction.
//!
//! Why: on SQLite every write goes through one connection, so concurrent
//! writers queue for it anyway, and each of their transactions pays a BEGIN
//! and a COMMIT (two more round trips to sqlx's worker thread) and writes the
//! pages it touched to the WAL at COMMIT. Writers that arrive while a batch
//! runs wait in a queue; the next batch takes all of them (up to a cap) and
//! commits them together, so the per-transaction costs are divided by the
//! batch size. A lone writer gets a batch of one: nothing changes for it
//! except one hop through this task.
//!
//! Each work item still commits or fails on its own. Items are applied one
//! after the other in one transaction without savepoints (a SAVEPOINT and a
//! RELEASE per item would cost the round trips saved); when one fails, the
//! batch is rolled back and run again without it, so a failed item leaves
//! nothing behind and the others are not affected. Replies are sent only
//! after the batch's outcome is durable, so a caller that lost a race (say,
//! for the same idempotency key) reads the winner's committed row.
//!
//! An item whose caller went away (request cancelled) is still applied: it
//! may already be in a committed batch, and a retry with the same request id
//! is answered from the idempotency key either way.
//!
//! PostgreSQL does not need this: it has many connections and already
//! flushes concurrent commits together.
use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;
pub use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

/// Applies one work item inside the batch's transaction. It must only write
/// through `txn` and must be safe to run again after a rollback (it is, if it
/// is a function of the item alone).
pub type Apply<J, E> = for<'t> fn(&'t DatabaseTransaction, &'t J) -> BoxFuture<'t, Result<(), E>>;

/// How a service commits its changes: on SQLite through the one writer's
/// [`GroupCommit`], on PostgreSQL in a transaction of its own — the same
/// `apply` either way, so a service writes its transaction logic once.
pub struct Writer<J, E> {
    writer: DatabaseConnection,
    group: Option<GroupCommit<J, E>>,
    apply: Apply<J, E>,
    on_db_error: fn(&DbErr) -> E,
}

impl<J, E> Clone for Writer<J, E> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
            group: self.group.clone(),
            apply: self.apply,
            on_db_error: self.on_db_error,
        }
    }
}

impl<J, E> std::fmt::Debug for Writer<J, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("group_commit", &self.group.is_some())
            .finish_non_exhaustive()
    }
}

impl<J: Send + Sync + 'static, E: Send + 'static> Writer<J, E> {
    /// A writer over `db`'s writer pool; on SQLite it spawns the group
    /// commit task on the current tokio runtime. `on_db_error` turns a
    /// failed BEGIN, COMMIT or ROLLBACK into the caller's error.
    pub fn new(db: &crate::Db, apply: Apply<J, E>, on_db_error: fn(&DbErr) -> E) -> Self {
        let group = (db.backend() == sea_orm::DatabaseBackend::Sqlite)
            .then(|| GroupCommit::spawn(db.writer.clone(), apply, on_db_error));
        Self {
            writer: db.writer.clone(),
            group,
            apply,
            on_db_error,
        }
    }

    /// Applies `item` atomically: committed, or nothing of it written.
    pub async fn commit(&self, item: J) -> Result<(), E> {
        if let Some(group) = &self.group {
            return group.commit(item).await;
        }
        let txn = self
            .writer
            .begin()
            .await
            .map_err(|e| (self.on_db_error)(&e))?;
        match (self.apply)(&txn, &item).await {
            Ok(()) => txn.commit().await.map_err(|e| (self.on_db_error)(&e)),
            Err(e) => {
                // Dropping would roll back too; doing it explicitly returns
                // the connection promptly and surfaces rollback failures.
                if let Err(rb) = txn.rollback().await {
                    tracing::warn!(error = %rb, "rollback failed");
                }
                Err(e)
            }
        }
    }
}

/// A failed statement of a commit as the write protocol's error: a
/// transaction the database aborted to break a deadlock or a serialization
/// conflict is a version conflict (read again and retry; after too many the
/// caller gets ABORTED); anything else is the service's `other`.
pub fn commit_error<X>(
    e: &DbErr,
    other: impl FnOnce(&DbErr) -> X,
) -> rapport_usecase::CommitError<X> {
    if crate::classify(e) == crate::DbFailure::Contention {
        return rapport_usecase::CommitError::VersionConflict;
    }
    rapport_usecase::CommitError::Other(other(e))
}

/// Most items in one transaction: bounds how much one failing item makes the
/// others redo, and how long the first item of a batch waits for the last.
pub const MAX_BATCH: usize = 32;

/// Items waiting for the writer; senders wait when it is full.
const QUEUE: usize = 1024;

type Reply<E> = oneshot::Sender<Result<(), E>>;

/// A handle to the writer task. Cloning is cheap; the task ends when the last
/// handle is dropped.
pub struct GroupCommit<J, E> {
    queue: mpsc::Sender<(J, Reply<E>)>,
    on_db_error: fn(&DbErr) -> E,
}

impl<J, E> Clone for GroupCommit<J, E> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            on_db_error: self.on_db_error,
        }
    }
}

impl<J: Send + Sync + 'static, E: Send + 'static> GroupCommit<J, E> {
    /// Spawns the writer task on the current tokio runtime. `on_db_error`
    /// turns a failed BEGIN, COMMIT or ROLLBACK into the caller's error.
    pub fn spawn(
        writer: DatabaseConnection,
        apply: Apply<J, E>,
        on_db_error: fn(&DbErr) -> E,
    ) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, rx, apply, on_db_error));
        Self { queue, on_db_error }
    }

    /// Applies `item` in the next batch; returns once that batch committed
    /// (`Ok`) or `item` failed or could not be committed (nothing of it was
    /// written).
    pub async fn commit(&self, item: J) -> Result<(), E> {
        let stopped = || (self.on_db_error)(&DbErr::Custom("the database writer stopped".into()));
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn run<J, E>(
    writer: DatabaseConnection,
    mut rx: mpsc::Receiver<(J, Reply<E>)>,
    apply: Apply<J, E>,
    on_db_error: fn(&DbErr) -> E,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (items, replies): (Vec<J>, Vec<Reply<E>>) = batch.drain(..).unzip();
        // A panic in one batch must not stop every later write of the
        // service while it still reports itself serving: that batch fails
        // (its transaction is rolled back when dropped), the next one runs.
        let outcomes = AssertUnwindSafe(commit_batch(&writer, &items, apply, on_db_error))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                tracing::error!(
                    items = items.len(),
                    "a write batch panicked; nothing of it was committed"
                );
                let panicked = DbErr::Custom("the write batch failed".into());
                items.iter().map(|_| Err(on_db_error(&panicked))).collect()
            });
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A caller that went away does not want its answer.
            let _ = reply.send(outcome);
        }
    }
}

/// Commits every item of `items` that succeeds on its own, in one
/// transaction; one outcome per item, in order.
async fn commit_batch<J, E>(
    writer: &DatabaseConnection,
    items: &[J],
    apply: Apply<J, E>,
    on_db_error: fn(&DbErr) -> E,
) -> Vec<Result<(), E>> {
    // The items that failed on their own; every other item shares the
    // outcome of the batch's last transaction.
    let mut failed: Vec<Option<E>> = items.iter().map(|_| None).collect();
    let committed = loop {
        let pending: Vec<usize> = (0..items.len()).filter(|&i| failed[i].is_none()).collect();
        if pending.is_empty() {
            break Ok(());
        }
        let txn = match writer.begin().await {
            Ok(txn) => txn,
            Err(e) => break Err(e),
        };
        let mut failure = None;
        for &i in &pending {
            if let Err(e) = apply(&txn, &items[i]).await {
                failure = Some((i, e));
                break;
            }
        }
        let Some((i, e)) = failure else {
            crate::crash::point("write.before_commit");
            let committed = txn.commit().await;
            if committed.is_ok() {
                crate::crash::point("write.after_commit");
            }
            break committed;
        };
        // The item may have written part of itself: undo the whole batch
        // and run the others again without it.
        failed[i] = Some(e);
        if let Err(rb) = txn.rollback().await {
            tracing::warn!(error = %rb, "rollback failed");
        }
    };
    failed
        .into_iter()
        .map(|f| match f {
            Some(e) => Err(e),
            None => committed.as_ref().map_err(on_db_error).copied(),
        })
        .collect()
}

impl<J, E> std::fmt::Debug for GroupCommit<J, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}
