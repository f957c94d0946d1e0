//! A real HTTP receiver for tests of outbound calls (webhook deliveries,
//! channel connectors): hyper's HTTP/1.1 server on `127.0.0.1:0` that
//! records every request and checks Standard Webhooks signatures on its
//! own, independently of the code under test.
use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use bytes::Bytes;
use hmac::{Hmac, KeyInit as _, Mac as _};
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};

/// How long [`Receiver::next`] waits: a generous bound so that a broken
/// service fails the test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its headers.
    pub headers: http::HeaderMap,
    /// Its request target.
    pub path: String,
    /// Its body.
    pub body: String,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    /// Whether the request is signed with `secret` as the Standard Webhooks
    /// specification says, checked here independently of the service: the
    /// key is the base64 after `whsec_`, the signed content
    /// `{webhook-id}.{webhook-timestamp}.{body}`, and `webhook-signature` a
    /// space-separated list of `v1,<base64 HMAC-SHA256>`.
    pub fn signed_with(&self, secret: &str) -> bool {
        let key = B64
            .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
            .expect("base64 secret");
        let content = format!(
            "{}.{}.{}",
            self.header("webhook-id"),
            self.header("webhook-timestamp"),
            self.body
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(content.as_bytes());
        let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
        self.header("webhook-signature")
            .split(' ')
            .any(|s| s == expected)
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// An HTTP server on `127.0.0.1:0` that records every request and answers
/// a status (after `hold` is released, when it holds).
pub struct Receiver {
    /// `http://127.0.0.1:{port}/hook`.
    pub url: String,
    /// Its port.
    pub port: u16,
    requests: mpsc::UnboundedReceiver<Received>,
    status: Arc<AtomicU16>,
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A receiver answering `status` at once.
    pub async fn answering(status: u16) -> Self {
        Self::start(status, false).await
    }

    /// A receiver that records each request, then holds its answer (200)
    /// until [`Receiver::release`] — an endpoint that is slow or dead.
    pub async fn holding() -> Self {
        Self::start(200, true).await
    }

    async fn start(status: u16, hold: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a receiver");
        let port = listener.local_addr().unwrap().port();
        let (tx, requests) = mpsc::unbounded_channel();
        let (release, held) = watch::channel(!hold);
        let status = Arc::new(AtomicU16::new(status));
        let answer = status.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tx, held, answer) = (tx.clone(), held.clone(), answer.clone());
                let service = service_fn(move |req: Request<Incoming>| {
                    let (tx, mut held, answer) = (tx.clone(), held.clone(), answer.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let _ = tx.send(Received {
                            headers: parts.headers,
                            path: parts.uri.to_string(),
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                        let _ = held.wait_for(|released| *released).await;
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(answer.load(Ordering::SeqCst))
                                .body(Full::new(Bytes::new()))
                                .expect("a response"),
                        )
                    }
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
            requests,
            status,
            release,
            task,
        }
    }

    /// The next request, waiting at most [`PATIENCE`].
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(PATIENCE, self.requests.recv())
            .await
            .expect("a request within the test's patience")
            .expect("the receiver is running")
    }

    /// The requests received so far, without waiting.
    pub fn received_so_far(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            out.push(r);
        }
        out
    }

    /// Answers `status` from now on.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Lets every held answer go, and answers at once from now on.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}
