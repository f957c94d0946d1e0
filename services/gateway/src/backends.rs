//! Where calls go: per gRPC service, a balanced pool of HTTP/2 connections to
//! every address its endpoints resolve to. Names are re-resolved
//! periodically, so a Kubernetes headless Service's pods are picked up as
//! they come and go. Several connections per address: one HTTP/2 connection
//! would pin all traffic to one server thread and one TCP window.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use anyhow::Context as _;
use std::sync::Arc;

use crate::adaptive::{AdaptiveConfig, AdaptiveLimit};
use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc::Sender, task::JoinHandle};
use tonic::transport::{Channel, Endpoint, channel::Change};

/// Endpoints of one backend service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// `http://host:port` URLs; a host name may resolve to many addresses.
    pub endpoints: Vec<String>,
    /// HTTP/2 connections per resolved address.
    pub connections: usize,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            connections: 2,
        }
    }
}

/// Channels (and adaptive limits) by fully qualified gRPC service name.
#[derive(Debug)]
pub struct Backends {
    channels: HashMap<String, Channel>,
    limits: HashMap<String, Arc<AdaptiveLimit>>,
    resolvers: Vec<JoinHandle<()>>,
}

impl Drop for Backends {
    fn drop(&mut self) {
        for r in &self.resolvers {
            r.abort();
        }
    }
}

type Key = (SocketAddr, usize);

fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("backend endpoint {url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("backend endpoint {url:?} must be http:// (h2c inside the cluster)");
    }
    let host = uri
        .host()
        .with_context(|| format!("backend endpoint {url:?} has no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

async fn resolve(targets: &[(String, u16)]) -> HashSet<SocketAddr> {
    let mut out = HashSet::new();
    for (host, port) in targets {
        match tokio::net::lookup_host((host.as_str(), *port)).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => tracing::warn!(host, error = %e, "backend name did not resolve"),
        }
    }
    out
}

async fn resolve_loop(
    service: String,
    targets: Vec<(String, u16)>,
    connections: usize,
    every: Duration,
    tx: Sender<Change<Key, Endpoint>>,
) {
    let mut current: HashSet<Key> = HashSet::new();
    loop {
        let addrs = resolve(&targets).await;
        // An empty answer is more likely a DNS hiccup than a backend with no
        // pods: keep the connections we have.
        if !addrs.is_empty() {
            let wanted: HashSet<Key> = addrs
                .iter()
                .flat_map(|a| (0..connections).map(move |i| (*a, i)))
                .collect();
            for gone in current.difference(&wanted) {
                if tx.send(Change::Remove(*gone)).await.is_err() {
                    return;
                }
            }
            for new in wanted.difference(&current) {
                let endpoint = Endpoint::from_shared(format!("http://{}", new.0))
                    .expect("a socket address is a valid authority")
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(2))
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .keep_alive_while_idle(true);
                if tx.send(Change::Insert(*new, endpoint)).await.is_err() {
                    return;
                }
            }
            if wanted != current {
                tracing::info!(
                    service,
                    addresses = addrs.len(),
                    connections = wanted.len(),
                    "backend pool updated"
                );
            }
            current = wanted;
        }
        tokio::time::sleep(every).await;
    }
}

impl Backends {
    /// Starts a pool and a resolver per service. Must run inside a Tokio runtime.
    pub fn start(
        config: &BTreeMap<String, BackendConfig>,
        resolve_every: Duration,
        adaptive: &AdaptiveConfig,
    ) -> anyhow::Result<Self> {
        let mut channels = HashMap::new();
        let mut limits = HashMap::new();
        let mut resolvers = Vec::new();
        for (service, backend) in config {
            if backend.endpoints.is_empty() {
                anyhow::bail!("backends.{service}: no endpoints");
            }
            let targets = backend
                .endpoints
                .iter()
                .map(|e| host_port(e))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (channel, tx) = Channel::balance_channel::<Key>(1024);
            resolvers.push(tokio::spawn(resolve_loop(
                service.clone(),
                targets,
                backend.connections.clamp(1, 64),
                resolve_every,
                tx,
            )));
            channels.insert(service.clone(), channel);
            if adaptive.enabled {
                limits.insert(service.clone(), AdaptiveLimit::new(adaptive));
            }
        }
        Ok(Self {
            channels,
            limits,
            resolvers,
        })
    }

    /// The channel of a service.
    pub fn channel(&self, service: &str) -> Option<Channel> {
        self.channels.get(service).cloned()
    }

    /// The adaptive concurrency limit of a service, when enabled.
    pub fn limit(&self, service: &str) -> Option<&Arc<AdaptiveLimit>> {
        self.limits.get(service)
    }

    /// Names of the routed services.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_h2c_urls() {
        assert_eq!(
            host_port("http://profiles:50051").unwrap(),
            ("profiles".into(), 50051)
        );
        assert_eq!(host_port("http://[::1]:9").unwrap(), ("::1".into(), 9));
        assert!(host_port("https://profiles:50051").is_err());
        assert!(host_port("profiles:50051").is_err());
    }
}
