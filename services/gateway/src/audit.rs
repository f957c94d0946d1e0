//! The audit log writer. Requests hand records to a bounded queue and never
//! wait for the database; one task writes them in batches. When the queue is
//! full, records are dropped and counted, rather than slowing every caller.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

use crate::storage::{AuditRecord, Store};

const QUEUE: usize = 10_000;
const BATCH: usize = 256;

enum Item {
    Record(AuditRecord),
    Flush(oneshot::Sender<()>),
}

/// Where the gateway sends audit records.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<Item>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit item")
    }
}

impl AuditSink {
    /// Starts the writer task.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(store, rx));
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues a record without waiting.
    pub fn record(&self, record: AuditRecord) {
        if self.tx.try_send(Item::Record(record)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "audit queue full; records dropped");
            }
        }
    }

    /// Waits until every record queued before this call is written, so an
    /// admin reading the log sees their own calls.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Item::Flush(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Item>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Take whatever else is queued, up to a batch.
        while let Some(item) = next {
            match item {
                Item::Record(r) => batch.push(r),
                Item::Flush(w) => waiters.push(w),
            }
            next = if batch.len() < BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if let Err(e) = store.append_audit(&batch).await {
            tracing::error!(error = %e, records = batch.len(), "writing audit records failed");
        }
        batch.clear();
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}
