//! Call deadlines: the client's `grpc-timeout`, answered with
//! DEADLINE_EXCEEDED when it passes.
//!
//! Why a layer of our own: tonic's server reads the same header and, when the
//! time is up, answers CANCELLED ("Timeout expired"), which tells a client
//! that somebody cancelled the call rather than that its deadline passed
//! (gRPC's status codes guide: DEADLINE_EXCEEDED). This layer sits inside
//! tonic's timer and gives up [`MARGIN`] earlier, so its answer is the one a
//! client sees.
use std::{
    task::{Context, Poll},
    time::Duration,
};

use futures::{FutureExt as _, future::Map};
use tokio::time::{Timeout, error::Elapsed};
use tonic::{Code, body::Body};

use crate::ErrorBuilder;

/// How much earlier than the client's deadline a server gives up: enough for
/// this answer to beat tonic's timer, which started a moment before ours.
pub const MARGIN: Duration = Duration::from_millis(5);

/// Parses a `grpc-timeout` value (`100m`, `5S`, …): at most 8 digits and a
/// unit, as the gRPC-over-HTTP/2 spec has it.
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a `grpc-timeout` value in milliseconds (at most 8 digits).
pub fn format_grpc_timeout(d: Duration) -> String {
    format!("{}m", d.as_millis().clamp(1, 99_999_999))
}

/// The client's timeout (`grpc-timeout`), if it sent a valid one.
pub fn client_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
}

/// The client's timeout, else `default`; never more than `default` (the
/// server's own limit, as tonic applies it).
pub fn call_timeout(headers: &http::HeaderMap, default: Duration) -> Duration {
    client_timeout(headers).map_or(default, |t| t.min(default))
}

/// Tower layer answering DEADLINE_EXCEEDED at the call's deadline (minus
/// [`MARGIN`]); `default` is the server's limit for calls without one.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    default: Duration,
}

impl DeadlineLayer {
    /// Deadlines of at most `default`.
    pub fn new(default: Duration) -> Self {
        Self { default }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadlines<S>;

    fn layer(&self, inner: S) -> Deadlines<S> {
        Deadlines {
            inner,
            default: self.default,
        }
    }
}

/// See [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadlines<S> {
    inner: S,
    default: Duration,
}

/// The handler's answer, or DEADLINE_EXCEEDED if the time ran out first.
type Answer<E> =
    fn(Result<Result<http::Response<Body>, E>, Elapsed>) -> Result<http::Response<Body>, E>;

impl<S, B> tower::Service<http::Request<B>> for Deadlines<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    // Named, not boxed: this runs on every call of every service.
    type Future = Map<Timeout<S::Future>, Answer<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let timeout = call_timeout(req.headers(), self.default);
        let deadline = tokio::time::Instant::now()
            + timeout.saturating_sub(MARGIN).max(Duration::from_millis(1));
        // The handler is dropped when the time runs out: what it had not
        // committed is rolled back.
        tokio::time::timeout_at(deadline, self.inner.call(req)).map(answer as Answer<S::Error>)
    }
}

fn answer<E>(
    outcome: Result<Result<http::Response<Body>, E>, Elapsed>,
) -> Result<http::Response<Body>, E> {
    outcome.unwrap_or_else(|_| {
        Ok(
            ErrorBuilder::new(Code::DeadlineExceeded, "rapport.dev", "DEADLINE_EXCEEDED")
                .message("the call did not finish before its deadline")
                .build()
                .into_http(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("5"), None);
        assert_eq!(parse_grpc_timeout("123456789m"), None);
        assert_eq!(parse_grpc_timeout("1x"), None);
        assert_eq!(format_grpc_timeout(Duration::from_secs(3)), "3000m");
    }

    #[test]
    fn the_server_limit_caps_the_client_timeout() {
        let mut headers = http::HeaderMap::new();
        let limit = Duration::from_secs(30);
        assert_eq!(call_timeout(&headers, limit), limit);
        headers.insert("grpc-timeout", http::HeaderValue::from_static("250m"));
        assert_eq!(call_timeout(&headers, limit), Duration::from_millis(250));
        headers.insert("grpc-timeout", http::HeaderValue::from_static("2M"));
        assert_eq!(call_timeout(&headers, limit), limit);
        headers.insert("grpc-timeout", http::HeaderValue::from_static("soon"));
        assert_eq!(call_timeout(&headers, limit), limit);
    }
}
