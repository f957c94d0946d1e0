//! The report of a bench run: one row per scenario, as an aligned text table,
//! as a compare view (each scenario as a ratio to its ceiling) and as JSON.
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::engine::{ProcessUsage, RunStats};

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// How the run was set up.
    pub run: RunInfo,
    /// One row per scenario, in the order they ran.
    pub scenarios: Vec<ScenarioReport>,
    /// Ceilings measured outside the RPC path (e.g. raw inserts into the same
    /// schema), which scenarios may name as theirs.
    #[serde(default)]
    pub ceilings: Vec<Ceiling>,
}

/// How a run was set up: what a reader needs to reproduce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Version of the `rapport` binary.
    pub rapport_version: String,
    /// When the run started, seconds since the Unix epoch.
    pub started_unix: u64,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// Customers in the profiles database when the scenarios started.
    pub customers: u64,
    /// Where they came from: `api` (created by the harness) or `seed`
    /// (`rapport seed`).
    pub customers_source: String,
    /// Customers the read scenarios draw from.
    pub sample: usize,
    /// Warm-up per scenario, seconds.
    pub warmup_secs: f64,
    /// Measured window per scenario, seconds.
    pub duration_secs: f64,
    /// Workers (calls in flight at most).
    pub concurrency: usize,
    /// HTTP/2 connections of the load generator.
    pub connections: usize,
    /// Open-loop rate, calls per second; `None` for closed loop.
    pub rate: Option<f64>,
    /// Threads of the load generator's runtime.
    pub client_threads: usize,
    /// Echo payload: the encoded size of the realistic customer, bytes.
    pub payload_bytes: usize,
    /// How processes were pinned to CPUs.
    pub pinning: String,
    /// CPUs the machine has.
    pub cpus: usize,
    /// Unit of `/proc` CPU times.
    pub clock_ticks_per_second: u64,
}

/// One scenario's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// E.g. `profiles.get-via-gateway`.
    pub scenario: String,
    /// `direct` or `via-gateway`.
    pub path: String,
    /// What the compare view reads it against: another scenario (`echo`) or
    /// a [`Ceiling`] by name.
    pub ceiling: Option<String>,
    /// The scenario it is the gateway variant of, for the gateway's share.
    pub direct: Option<String>,
    /// Another scenario of the run it is also read against, beside its
    /// ceiling (e.g. `profiles.create` for a message that creates a customer).
    #[serde(default)]
    pub baseline: Option<String>,
    /// The measurements.
    pub stats: RunStats,
}

/// A ceiling measured without the RPC path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    /// Name scenarios refer to, e.g. `sqlite-insert`.
    pub name: String,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// 99th percentile latency of one operation, microseconds, when known.
    pub p99_us: Option<f64>,
    /// How it was measured.
    pub note: String,
}

impl BenchReport {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes infallibly")
    }

    /// Throughput of a ceiling by name: a scenario's successful calls per
    /// second, or a [`Ceiling`]'s operations per second.
    fn ceiling_rate(&self, name: &str) -> Option<f64> {
        self.scenario(name).map(|s| s.stats.ok_per_sec).or_else(|| {
            self.ceilings
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.ops_per_sec)
        })
    }

    /// p99 latency of a ceiling by name, microseconds.
    fn ceiling_p99(&self, name: &str) -> Option<f64> {
        self.scenario(name)
            .map(|s| s.stats.latency_us.p99)
            .or_else(|| {
                self.ceilings
                    .iter()
                    .find(|c| c.name == name)
                    .and_then(|c| c.p99_us)
            })
    }

    fn scenario(&self, name: &str) -> Option<&ScenarioReport> {
        self.scenarios.iter().find(|s| s.scenario == name)
    }

    /// The setup in two lines.
    pub fn render_header(&self) -> String {
        let r = &self.run;
        let mode = match r.rate {
            None => format!(
                "closed loop, {} workers over {} connections",
                r.concurrency, r.connections
            ),
            Some(rate) => format!(
                "open loop at {rate} calls/s, at most {} in flight over {} connections",
                r.concurrency, r.connections
            ),
        };
        let data = if r.customers_source == "none" {
            r.database.clone()
        } else {
            format!(
                "{} · {} customers ({}; reads draw from {})",
                r.database, r.customers, r.customers_source, r.sample
            )
        };
        format!(
            "rapport {} bench · {data} · {mode}\n\
             warm-up {}s then {}s measured per scenario · payload {} B · load generator {} thread(s) · {} CPUs · {}\n",
            r.rapport_version,
            r.warmup_secs,
            r.duration_secs,
            r.payload_bytes,
            r.client_threads,
            r.cpus,
            r.pinning,
        )
    }

    /// The results table, then the errors seen.
    pub fn render_table(&self) -> String {
        let headers = [
            "scenario",
            "req/s",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            "errors",
            "server CPU µs/req",
            "server CPU %",
            "server peak RSS MiB",
            "client CPU %",
            "other CPU %",
        ];
        let rows = self
            .scenarios
            .iter()
            .map(|s| {
                let t = &s.stats;
                let l = &t.latency_us;
                vec![
                    s.scenario.clone(),
                    format!("{:.0}", t.requests_per_sec),
                    micros(l.p50),
                    micros(l.p90),
                    micros(l.p99),
                    micros(l.p999),
                    micros(l.max),
                    t.errors.values().sum::<u64>().to_string(),
                    per_server(&t.servers, |u| {
                        u.cpu_us_per_request.map(|v| format!("{v:.1}"))
                    }),
                    per_server(&t.servers, |u| u.cpu_percent.map(|v| format!("{v:.0}"))),
                    per_server(&t.servers, |u| {
                        u.peak_rss_kib.map(|k| format!("{:.1}", k as f64 / 1024.0))
                    }),
                    t.client
                        .cpu_percent
                        .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}")),
                    t.other_cpu_percent
                        .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}")),
                ]
            })
            .collect();
        let mut out = table(&headers, rows);
        for s in &self.scenarios {
            for (code, n) in &s.stats.errors {
                let example = s.stats.error_examples.get(code).map_or("", String::as_str);
                let _ = writeln!(out, "  {}: {n} × {code} (e.g. {example:?})", s.scenario);
            }
        }
        out
    }

    /// Each scenario as a ratio to its ceiling (echo for the RPC path, the
    /// raw insert rate for writes when measured), and gateway variants as a
    /// ratio to their direct scenario.
    pub fn render_compare(&self) -> String {
        let headers = [
            "scenario",
            "ok/s",
            "ceiling",
            "ceiling ok/s",
            "× ceiling",
            "× direct",
            "p99 µs",
            "p99 × ceiling",
        ];
        let rows = self
            .scenarios
            .iter()
            .map(|s| {
                let ceiling = s.ceiling.as_deref();
                let ceiling_rate = ceiling.and_then(|c| self.ceiling_rate(c));
                let ceiling_p99 = ceiling.and_then(|c| self.ceiling_p99(c));
                let direct = s.direct.as_deref().and_then(|d| self.scenario(d));
                vec![
                    s.scenario.clone(),
                    format!("{:.0}", s.stats.ok_per_sec),
                    ceiling.unwrap_or("—").to_owned(),
                    ceiling_rate.map_or_else(|| "—".to_owned(), |r| format!("{r:.0}")),
                    ratio(Some(s.stats.ok_per_sec), ceiling_rate),
                    ratio(Some(s.stats.ok_per_sec), direct.map(|d| d.stats.ok_per_sec)),
                    micros(s.stats.latency_us.p99),
                    ratio(Some(s.stats.latency_us.p99), ceiling_p99),
                ]
            })
            .collect();
        let mut out = table(&headers, rows);
        for c in &self.ceilings {
            let _ = writeln!(
                out,
                "  ceiling {}: {:.0}/s ({})",
                c.name, c.ops_per_sec, c.note
            );
        }
        // A scenario against its baseline, and one read against a measured
        // ceiling against every ceiling of the run: the one-row ceilings say
        // what the storage can do, a ceiling of the same statements says what
        // is left for our code. (Not a scenario read against another
        // scenario, such as echo.)
        for s in &self.scenarios {
            let mut parts = Vec::new();
            if let Some(b) = s.baseline.as_deref().and_then(|b| self.scenario(b)) {
                parts.push(format!(
                    "{} {} (p99 {})",
                    ratio(Some(s.stats.ok_per_sec), Some(b.stats.ok_per_sec)),
                    b.scenario,
                    ratio(Some(s.stats.latency_us.p99), Some(b.stats.latency_us.p99)),
                ));
            }
            let measured = s
                .ceiling
                .as_deref()
                .is_some_and(|c| self.ceilings.iter().any(|m| m.name == c));
            if measured && (self.ceilings.len() > 1 || !parts.is_empty()) {
                parts.extend(self.ceilings.iter().map(|c| {
                    format!(
                        "{} {}",
                        ratio(Some(s.stats.ok_per_sec), Some(c.ops_per_sec)),
                        c.name
                    )
                }));
            }
            if !parts.is_empty() {
                let _ = writeln!(out, "  {}: {}", s.scenario, parts.join(", "));
            }
        }
        let missing: Vec<&str> = self
            .scenarios
            .iter()
            .filter_map(|s| s.ceiling.as_deref())
            .filter(|c| self.ceiling_rate(c).is_none())
            .collect();
        if !missing.is_empty() {
            let _ = writeln!(
                out,
                "  not measured in this run (add its scenario for a ratio): {}",
                dedup(missing).join(", ")
            );
        }
        out
    }
}

fn dedup(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v.dedup();
    v
}

/// `12.3` below 100 µs, whole microseconds above.
fn micros(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn ratio(value: Option<f64>, base: Option<f64>) -> String {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}×", v / b),
        _ => "—".to_owned(),
    }
}

/// `gateway 21.3, echo 30.1`; `n/a` where nothing was readable.
fn per_server(servers: &[ProcessUsage], value: impl Fn(&ProcessUsage) -> Option<String>) -> String {
    if servers.is_empty() {
        return "—".to_owned();
    }
    servers
        .iter()
        .map(|u| {
            format!(
                "{} {}",
                u.role,
                value(u).unwrap_or_else(|| "n/a".to_owned())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An aligned text table: the first column left-aligned, the rest right.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w - width(cell));
            if i == 0 {
                out.push_str(cell);
                out.push_str(&pad);
            } else {
                out.push_str("  ");
                out.push_str(&pad);
                out.push_str(cell);
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(headers);
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
    out.push('\n');
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::{Latency, LoadMode};

    fn stats(ok_per_sec: f64, p99: f64) -> RunStats {
        RunStats {
            mode: LoadMode::Closed,
            concurrency: 2,
            connections: 1,
            window_secs: 1.0,
            requests: ok_per_sec as u64,
            ok: ok_per_sec as u64,
            errors: BTreeMap::new(),
            error_examples: BTreeMap::new(),
            requests_per_sec: ok_per_sec,
            ok_per_sec,
            latency_us: Latency {
                p50: p99 / 2.0,
                p90: p99 * 0.8,
                p99,
                p999: p99 * 1.5,
                max: p99 * 2.0,
                mean: p99 / 2.0,
            },
            servers: vec![],
            client: ProcessUsage {
                role: "client".into(),
                pids: vec![1],
                cpu_us_per_request: None,
                cpu_percent: Some(50.0),
                peak_rss_kib: Some(2048),
            },
            other_cpu_percent: Some(1.5),
        }
    }

    fn row(name: &str, ceiling: Option<&str>, direct: Option<&str>, s: RunStats) -> ScenarioReport {
        ScenarioReport {
            baseline: None,
            scenario: name.into(),
            path: if direct.is_some() {
                "via-gateway"
            } else {
                "direct"
            }
            .into(),
            ceiling: ceiling.map(Into::into),
            direct: direct.map(Into::into),
            stats: s,
        }
    }

    #[test]
    fn compare_reads_scenarios_against_their_ceilings() {
        let report = BenchReport {
            run: RunInfo {
                rapport_version: "0.1.0".into(),
                started_unix: 0,
                database: "sqlite".into(),
                customers: 1000,
                customers_source: "api".into(),
                sample: 1000,
                warmup_secs: 0.1,
                duration_secs: 1.0,
                concurrency: 2,
                connections: 1,
                rate: None,
                client_threads: 1,
                payload_bytes: 300,
                pinning: "none".into(),
                cpus: 2,
                clock_ticks_per_second: 100,
            },
            scenarios: vec![
                row("echo", None, None, stats(20_000.0, 100.0)),
                row("profiles.get", Some("echo"), None, stats(10_000.0, 300.0)),
                row(
                    "profiles.get-via-gateway",
                    Some("echo"),
                    Some("profiles.get"),
                    stats(5_000.0, 600.0),
                ),
                row(
                    "profiles.create",
                    Some("sqlite-insert"),
                    None,
                    stats(2_000.0, 900.0),
                ),
                row(
                    "profiles.search",
                    Some("unmeasured"),
                    None,
                    stats(1_000.0, 900.0),
                ),
                ScenarioReport {
                    baseline: Some("profiles.create".into()),
                    ..row(
                        "conversations.receive-new",
                        Some("sqlite-insert"),
                        None,
                        stats(500.0, 2_700.0),
                    )
                },
            ],
            ceilings: vec![
                Ceiling {
                    name: "sqlite-insert".into(),
                    ops_per_sec: 4_000.0,
                    p99_us: Some(450.0),
                    note: "raw".into(),
                },
                Ceiling {
                    name: "sqlite-shape".into(),
                    ops_per_sec: 1_000.0,
                    p99_us: None,
                    note: "same statements".into(),
                },
            ],
        };
        let compare = report.render_compare();
        let line = |name: &str| {
            compare
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("{name} in\n{compare}"))
                .to_owned()
        };
        assert!(line("profiles.get").contains("0.50×"), "{compare}");
        assert!(
            line("profiles.get").contains("3.00×"),
            "p99 ratio: {compare}"
        );
        assert!(
            line("profiles.get-via-gateway").contains("0.25×"),
            "{compare}"
        );
        assert!(
            line("profiles.get-via-gateway").contains("0.50×"),
            "vs direct: {compare}"
        );
        assert!(line("profiles.create").contains("0.50×"), "{compare}");
        assert!(
            line("profiles.create").contains("2.00×"),
            "p99 ratio: {compare}"
        );
        // A write against every storage ceiling; reads only against echo.
        assert!(
            compare.contains("  profiles.create: 0.50× sqlite-insert, 2.00× sqlite-shape"),
            "{compare}"
        );
        assert!(!compare.contains("  profiles.get:"), "{compare}");
        // A scenario with a baseline against it too, throughput and p99.
        assert!(
            compare.contains(
                "  conversations.receive-new: 0.25× profiles.create (p99 3.00×), \
                 0.12× sqlite-insert, 0.50× sqlite-shape"
            ),
            "{compare}"
        );
        assert!(compare.contains("not measured in this run"), "{compare}");
        assert!(compare.contains("unmeasured"), "{compare}");

        let table = report.render_table();
        assert_eq!(table.lines().count(), 2 + 6, "{table}");
        let back: BenchReport = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(back, report);
    }
}
