//! rapport-bench: the measuring instrument behind `rapport bench`. It owns the
//! load engine (closed and open loop, warm-up then a measured window, HDR
//! latency histograms, errors by gRPC code), the CPU and peak-memory readings
//! of server processes from `/proc`, the report (table, compare view, JSON),
//! the workloads (echo, the profiles and the conversations RPCs with realistic
//! payloads), the
//! bare echo server that gives the RPC ceiling, and the storage ceilings'
//! report and pgbench runner.
//!
//! It starts no service of its own besides echo and knows no schema: the
//! `rapport` binary spawns the servers and hands their addresses and process
//! ids to the engine; a service measures raw inserts into its own tables and
//! hands pgbench its script (`rapport_profiles::ceiling`).
#![forbid(unsafe_code)]

pub mod ceiling;
pub mod echo;
pub mod engine;
pub mod pgbench;
pub mod procfs;
pub mod report;
pub mod workload;

pub use ceiling::CeilingReport;
pub use engine::{Caller, LoadConfig, Meter, RunStats, Target, Watched, Workload};
pub use report::{BenchReport, RunInfo, ScenarioReport};
/// The connection type workloads call on.
pub use tonic::transport::Channel;
