//! Signed outbound HTTP calls, as Rapport makes them to partners' endpoints
//! (webhook deliveries, channel connectors): the Standard Webhooks signing
//! secret and signature, the endpoint URL, which addresses calls must never
//! reach (SSRF), and the client (HTTP/1.1 POSTs over hyper, TLS by rustls
//! with the ring provider and the webpki roots).
//!
//! SSRF: a call resolves the URL's host itself, refuses it when any
//! address it resolves to is one calls must never reach
//! ([`address_refusal`]), and connects to a checked address — never to the
//! name again, so a DNS answer that changes between the check and the
//! connection (rebinding) cannot lead it elsewhere. Redirects are not
//! followed (a 3xx is an answer like any other). The same check runs when
//! a URL is stored, to tell the partner at once.
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::{
    TlsConnector,
    rustls::{self, pki_types::ServerName},
};

// The values live with the domain side of the shared crates; the client
// (transport) is here.
pub use rapport_usecase::webhook::{
    Answer, Attempt, Host, MAX_URL_LEN, SigningSecret, WebhookUrl, address_refusal,
};

/// The HTTP client of deliveries.
#[derive(Clone)]
pub struct Client {
    user_agent: &'static str,
    allow_private: bool,
    timeout: Duration,
    tls: TlsConnector,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("allow_private", &self.allow_private)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client sending `user_agent`, refusing private addresses unless
    /// `allow_private`, giving each attempt (resolving, connecting, TLS,
    /// the answer's head) at most `timeout`.
    pub fn new(user_agent: &'static str, allow_private: bool, timeout: Duration) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self {
            user_agent,
            allow_private,
            timeout,
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    /// The addresses `url` may be reached at: every address its host is or
    /// resolves to, each checked. `Err` (shown to the partner) when one is
    /// refused or there is none.
    pub async fn addresses(&self, url: &WebhookUrl) -> Result<Vec<SocketAddr>, String> {
        let port = url.port();
        let ips: Vec<IpAddr> = match url.host() {
            Host::Ip(ip) => vec![ip],
            Host::Domain(name) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|_| format!("the host {name} does not resolve"))?
                .map(|a| a.ip())
                .collect(),
        };
        if ips.is_empty() {
            return Err("the host does not resolve".to_owned());
        }
        for ip in &ips {
            if let Some(why) = address_refusal(*ip, self.allow_private) {
                tracing::debug!(url = %url, %ip, why, "webhook address refused");
                return Err(match url.host() {
                    Host::Ip(_) => format!("must not point to {why}"),
                    Host::Domain(name) => {
                        format!("must not point to {why} (the host {name} resolves to one)")
                    }
                });
            }
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }

    /// One attempt, without its timeout: the HTTP status of the answer.
    async fn post(&self, attempt: &Attempt) -> Result<u16, String> {
        let url = &attempt.url;
        let addresses = self.addresses(url).await?;
        let stream = connect(&addresses).await?;
        let mut request = http::Request::post(url.path_and_query())
            .header(http::header::HOST, url.authority())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, self.user_agent);
        for (name, value) in &attempt.headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(attempt.body.clone())))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        if !url.is_https() {
            return exchange(stream, request).await;
        }
        let name = match url.host() {
            Host::Domain(name) => ServerName::try_from(name.to_owned())
                .map_err(|_| "the host is not a valid TLS server name".to_owned())?,
            Host::Ip(ip) => ServerName::IpAddress(ip.into()),
        };
        let tls = self
            .tls
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        exchange(tls, request).await
    }
}

/// A connection to the first of `addresses` that accepts one.
async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("cannot connect: {last}"))
}

/// Sends `request` over `io` (HTTP/1.1) and reads the status of the answer.
async fn exchange<I>(io: I, request: http::Request<Full<Bytes>>) -> Result<u16, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    // Drives the connection; stopped with the attempt (a timeout drops it).
    let _connection = AbortOnDrop(tokio::spawn(connection));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("no HTTP answer: {e}"))?;
    Ok(response.status().as_u16())
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Client {
    /// Makes `attempt`: the HTTP status of the answer, or why there was
    /// none (within the client's timeout).
    pub async fn send(&self, attempt: &Attempt) -> Answer {
        match tokio::time::timeout(self.timeout, self.post(attempt)).await {
            Ok(Ok(status)) => Answer::Status(status),
            Ok(Err(why)) => Answer::NoAnswer(why),
            Err(_) => Answer::NoAnswer(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    /// `Err(why)` when the URL's host is, or resolves to, an address calls
    /// must never reach, or does not resolve (within the timeout).
    pub async fn check(&self, url: &WebhookUrl) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.addresses(url)).await {
            Ok(result) => result.map(drop),
            Err(_) => Err("the host does not resolve in time".to_owned()),
        }
    }
}
