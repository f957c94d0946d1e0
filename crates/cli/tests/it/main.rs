//! Tests of the `rapport` binary as a process, one binary: what only a
//! real process shows (a `kill -9`, what it exports) and the operator
//! commands.
mod crash;
mod dead_letters;
mod metrics;
mod otlp;
mod process;
