//! Tests of the `rapport` binary as a process, one binary: what only a
//! real process shows (a `kill -9`, what it exports) and the operator
//! commands, and `rapport dev` as the README runs it.
mod crash;
mod dead_letters;
mod dev;
mod metrics;
mod otlp;
mod process;
