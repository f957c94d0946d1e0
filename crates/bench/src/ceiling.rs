//! Storage write ceilings: what a storage setup commits per second when
//! nothing of ours is in the way. The measurements themselves are made by
//! whoever owns the schema (raw inserts into a service's own tables) or by
//! [`crate::pgbench`]; this is their common report.
use serde::{Deserialize, Serialize};

use crate::report::Ceiling;

/// The physical write limit of a storage setup, measured with the simplest
/// possible write: one row (or one fixed script) per transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CeilingReport {
    /// What was measured: `sqlite.raw_insert`, `postgres.raw_insert`,
    /// `postgres.pgbench_insert`, `postgres.pgbench_create_shape`.
    pub name: String,
    /// Concurrent writers (tasks, or pgbench clients).
    pub concurrency: usize,
    /// Transactions committed.
    pub operations: u64,
    /// Measured wall time, seconds.
    pub elapsed_secs: f64,
    /// Committed transactions per second.
    pub ops_per_sec: f64,
    /// Mean latency, milliseconds.
    pub mean_ms: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile latency, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest transaction, milliseconds.
    pub max_ms: f64,
}

impl CeilingReport {
    /// A report from per-transaction latencies in microseconds, collected by
    /// `concurrency` writers over `elapsed_secs`.
    pub fn from_latencies(
        name: String,
        concurrency: usize,
        elapsed_secs: f64,
        mut latencies_us: Vec<u64>,
    ) -> Self {
        latencies_us.sort_unstable();
        let n = latencies_us.len();
        let ms = |us: u64| us as f64 / 1_000.0;
        let at = |q: f64| {
            if n == 0 {
                0.0
            } else {
                ms(latencies_us[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
            }
        };
        Self {
            name,
            concurrency,
            operations: n as u64,
            elapsed_secs,
            ops_per_sec: if elapsed_secs > 0.0 {
                n as f64 / elapsed_secs
            } else {
                0.0
            },
            mean_ms: if n == 0 {
                0.0
            } else {
                ms(latencies_us.iter().sum::<u64>()) / n as f64
            },
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: latencies_us.last().copied().map_or(0.0, ms),
        }
    }

    /// The bench report's row for this ceiling; `how` says how it was
    /// measured.
    pub fn to_ceiling(&self, how: &str) -> Ceiling {
        Ceiling {
            name: self.name.clone(),
            ops_per_sec: self.ops_per_sec,
            p99_us: Some(self.p99_ms * 1000.0),
            note: format!(
                "{how}; {} writers, p50 {:.2} ms, p99 {:.2} ms",
                self.concurrency, self.p50_ms, self.p99_ms
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles() {
        let r = CeilingReport::from_latencies("x".into(), 1, 2.0, (1..=100).rev().collect());
        assert_eq!(r.operations, 100);
        assert_eq!(r.ops_per_sec, 50.0);
        assert_eq!(r.p50_ms, 0.050);
        assert_eq!(r.p99_ms, 0.099);
        assert_eq!(r.max_ms, 0.100);
        let empty = CeilingReport::from_latencies("x".into(), 1, 1.0, Vec::new());
        assert_eq!((empty.ops_per_sec, empty.p99_ms), (0.0, 0.0));
    }

    #[test]
    fn report_row() {
        let r = CeilingReport::from_latencies("sqlite.raw_insert".into(), 8, 1.0, vec![1_500; 4]);
        let row = r.to_ceiling("single-row INSERT");
        assert_eq!(row.name, "sqlite.raw_insert");
        assert_eq!(row.ops_per_sec, 4.0);
        assert_eq!(row.p99_us, Some(1_500.0));
        assert_eq!(
            row.note,
            "single-row INSERT; 8 writers, p50 1.50 ms, p99 1.50 ms"
        );
    }
}
