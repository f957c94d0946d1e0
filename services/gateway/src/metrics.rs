//! RED metrics per route and code (rate, errors, duration), refusals by
//! reason, and the gauges of the concurrency gates, in the Prometheus text
//! format on a separate listener, so scraping never shares the public port.
//! Every label value is bounded: routes are RPC paths from the catalog (or
//! `unknown`, for a path no RPC or REST route matches), never raw paths.
use std::{collections::BTreeMap, fmt::Write as _, sync::Mutex, time::Duration};

/// Upper bounds of the latency histogram, seconds: from the echo
/// backend's sub-millisecond answers to the 10 s default deadline.
const BOUNDS: [f64; 15] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// The route label of a request that matches no RPC and no REST route.
pub const UNKNOWN_ROUTE: &str = "unknown";

#[derive(Default)]
struct Histogram {
    buckets: [u64; BOUNDS.len()],
    sum_secs: f64,
    count: u64,
}

/// Counters and histograms of every route.
#[derive(Default)]
pub struct Metrics {
    calls: Mutex<BTreeMap<(String, &'static str), Histogram>>,
    refusals: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// A gauge read at scrape time.
pub struct Gauge {
    /// Metric name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Samples: labels (`k="v"` pairs of bounded values) and value.
    pub samples: Vec<(String, f64)>,
}

impl Metrics {
    /// Records one finished call.
    pub fn observe(&self, route: &str, code: &'static str, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut calls = self.calls.lock().expect("metrics lock");
        let stats = match calls.get_mut(&(route.to_owned(), code)) {
            Some(s) => s,
            None => calls.entry((route.to_owned(), code)).or_default(),
        };
        for (bucket, bound) in stats.buckets.iter_mut().zip(BOUNDS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        stats.sum_secs += secs;
        stats.count += 1;
    }

    /// Counts one call the gateway refused itself: `reason` is the
    /// `ErrorInfo.reason` the client sees, `cause` which gate or check
    /// (empty when the reason says it all).
    pub fn refused(&self, reason: &'static str, cause: &'static str) {
        *self
            .refusals
            .lock()
            .expect("metrics lock")
            .entry((reason, cause))
            .or_default() += 1;
    }

    /// The Prometheus text exposition, with `gauges` read at scrape time.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::new();
        {
            let calls = self.calls.lock().expect("metrics lock");
            out.push_str(
                "# HELP rapport_gateway_requests_total Calls answered, by RPC and gRPC code.\n",
            );
            out.push_str("# TYPE rapport_gateway_requests_total counter\n");
            for ((route, code), s) in calls.iter() {
                let _ = writeln!(
                    out,
                    "rapport_gateway_requests_total{{route=\"{route}\",code=\"{code}\"}} {}",
                    s.count
                );
            }
            out.push_str("# HELP rapport_gateway_request_duration_seconds Time to the end of the response, by RPC and gRPC code.\n");
            out.push_str("# TYPE rapport_gateway_request_duration_seconds histogram\n");
            for ((route, code), s) in calls.iter() {
                let labels = format!("route=\"{route}\",code=\"{code}\"");
                for (bound, n) in BOUNDS.iter().zip(s.buckets) {
                    let _ = writeln!(
                        out,
                        "rapport_gateway_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "rapport_gateway_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    s.count
                );
                let _ = writeln!(
                    out,
                    "rapport_gateway_request_duration_seconds_sum{{{labels}}} {}",
                    s.sum_secs
                );
                let _ = writeln!(
                    out,
                    "rapport_gateway_request_duration_seconds_count{{{labels}}} {}",
                    s.count
                );
            }
        }
        {
            let refusals = self.refusals.lock().expect("metrics lock");
            out.push_str("# HELP rapport_gateway_refusals_total Calls the gateway refused itself, by reason and cause.\n");
            out.push_str("# TYPE rapport_gateway_refusals_total counter\n");
            for ((reason, cause), n) in refusals.iter() {
                let _ = writeln!(
                    out,
                    "rapport_gateway_refusals_total{{reason=\"{reason}\",cause=\"{cause}\"}} {n}"
                );
            }
        }
        for gauge in gauges {
            let _ = writeln!(out, "# HELP {} {}", gauge.name, gauge.help);
            let _ = writeln!(out, "# TYPE {} gauge", gauge.name);
            for (labels, value) in &gauge.samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "{} {value}", gauge.name);
                } else {
                    let _ = writeln!(out, "{}{{{labels}}} {value}", gauge.name);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_codes_and_fills_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("/a.B/C", "OK", Duration::from_micros(300));
        m.observe("/a.B/C", "OK", Duration::from_millis(30));
        m.observe("/a.B/C", "NOT_FOUND", Duration::from_millis(3));
        m.observe("/a.B/C", "OK", Duration::from_secs(7));
        m.refused("OVERLOADED", "backend_limit");
        m.refused("OVERLOADED", "backend_limit");
        let text = m.render(&[]);
        let ok = "route=\"/a.B/C\",code=\"OK\"";
        assert!(text.contains(&format!("rapport_gateway_requests_total{{{ok}}} 3")));
        assert!(
            text.contains("rapport_gateway_requests_total{route=\"/a.B/C\",code=\"NOT_FOUND\"} 1")
        );
        assert!(text.contains(&format!(
            "rapport_gateway_request_duration_seconds_bucket{{{ok},le=\"0.0005\"}} 1"
        )));
        assert!(text.contains(&format!(
            "rapport_gateway_request_duration_seconds_bucket{{{ok},le=\"0.05\"}} 2"
        )));
        assert!(text.contains(&format!(
            "rapport_gateway_request_duration_seconds_bucket{{{ok},le=\"5\"}} 2"
        )));
        assert!(text.contains(&format!(
            "rapport_gateway_request_duration_seconds_bucket{{{ok},le=\"10\"}} 3"
        )));
        assert!(text.contains(&format!(
            "rapport_gateway_request_duration_seconds_count{{{ok}}} 3"
        )));
        assert!(text.contains(
            "rapport_gateway_refusals_total{reason=\"OVERLOADED\",cause=\"backend_limit\"} 2"
        ));
    }
}
