//! Crash points: named places in the write and relay paths where a test
//! process can SIGKILL itself, to prove that a `kill -9` there loses no
//! committed event (crates/cli/tests/it/crash.rs runs each 50 times).
//!
//! Compiled in only with the `crash-points` feature, which only the CLI's
//! tests enable; without it [`point`] is an empty inline function. With it,
//! the process dies at the point named by `RAPPORT_CRASH_POINT` on one pass
//! in `RAPPORT_CRASH_ONE_IN` (default 10), so a run gets past it a few times
//! (leaving work before and after it) before it dies there.
//!
//! The points: `write.before_commit` (the change's statements ran, nothing
//! is committed), `write.after_commit` (committed, the client not answered,
//! the relay not woken), `relay.before_publish` (a batch read, nothing
//! published), `relay.mid_batch` (part of a batch stored by the bus),
//! `relay.after_publish` (the batch stored, not marked published).

/// Dies here, by SIGKILL, when this is the configured crash point and the
/// dice say so.
#[cfg(feature = "crash-points")]
pub fn point(name: &str) {
    use std::sync::OnceLock;
    static CONFIG: OnceLock<Option<(String, u32)>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let point = std::env::var("RAPPORT_CRASH_POINT").ok()?;
        let one_in = std::env::var("RAPPORT_CRASH_ONE_IN")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(10u32)
            .max(1);
        Some((point, one_in))
    });
    let Some((point, one_in)) = config else {
        return;
    };
    if point != name || rand::random_range(0..*one_in) != 0 {
        return;
    }
    // SIGKILL, as the kernel's OOM killer or `kubectl delete --force` would:
    // no destructor, no flush, no rollback but the database's own. `kill`
    // rather than libc keeps the crate free of unsafe code.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::process::abort();
}

/// Without the `crash-points` feature: nothing.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &str) {}
