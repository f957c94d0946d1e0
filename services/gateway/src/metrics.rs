//! RED metrics per route (rate, errors, duration), in the Prometheus text
//! format on a separate listener, so scraping never shares the public port.
//! Route labels are RPC paths from the catalog (bounded), never raw paths.
use std::{collections::BTreeMap, fmt::Write as _, sync::Mutex, time::Duration};

/// Upper bounds of the latency histogram, seconds.
const BOUNDS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct RouteStats {
    by_code: BTreeMap<&'static str, u64>,
    buckets: [u64; BOUNDS.len()],
    sum_secs: f64,
    count: u64,
}

/// Counters and histograms of every route.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, RouteStats>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Records one finished call.
    pub fn observe(&self, route: &str, code: &'static str, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut routes = self.routes.lock().expect("metrics lock");
        let stats = match routes.get_mut(route) {
            Some(s) => s,
            None => routes.entry(route.to_owned()).or_default(),
        };
        *stats.by_code.entry(code).or_default() += 1;
        for (bucket, bound) in stats.buckets.iter_mut().zip(BOUNDS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        stats.sum_secs += secs;
        stats.count += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let routes = self.routes.lock().expect("metrics lock");
        let mut out = String::new();
        out.push_str(
            "# HELP rapport_gateway_requests_total Calls answered, by RPC and gRPC code.\n",
        );
        out.push_str("# TYPE rapport_gateway_requests_total counter\n");
        for (route, s) in routes.iter() {
            for (code, n) in &s.by_code {
                let _ = writeln!(
                    out,
                    "rapport_gateway_requests_total{{route=\"{route}\",code=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP rapport_gateway_request_duration_seconds Time to the end of the response, by RPC.\n");
        out.push_str("# TYPE rapport_gateway_request_duration_seconds histogram\n");
        for (route, s) in routes.iter() {
            for (bound, n) in BOUNDS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "rapport_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "rapport_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "rapport_gateway_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                s.sum_secs
            );
            let _ = writeln!(
                out,
                "rapport_gateway_request_duration_seconds_count{{route=\"{route}\"}} {}",
                s.count
            );
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
        let text = m.render();
        assert!(text.contains("rapport_gateway_requests_total{route=\"/a.B/C\",code=\"OK\"} 2"));
        assert!(
            text.contains("rapport_gateway_requests_total{route=\"/a.B/C\",code=\"NOT_FOUND\"} 1")
        );
        assert!(text.contains(
            "rapport_gateway_request_duration_seconds_bucket{route=\"/a.B/C\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "rapport_gateway_request_duration_seconds_bucket{route=\"/a.B/C\",le=\"0.005\"} 2"
        ));
        assert!(text.contains(
            "rapport_gateway_request_duration_seconds_bucket{route=\"/a.B/C\",le=\"+Inf\"} 3"
        ));
        assert!(
            text.contains("rapport_gateway_request_duration_seconds_count{route=\"/a.B/C\"} 3")
        );
    }
}
