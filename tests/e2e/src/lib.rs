//! rapport-e2e: the whole request path in one process for the whole-stack
//! tests in `tests/it/`: a real profiles service and a real gateway, each on
//! `127.0.0.1:0` over its own fresh database (SQLite, or PostgreSQL when
//! `RAPPORT_TEST_POSTGRES_URL` is set), real clients over real sockets.
//!
//! Each service's `Config` is built in one place only: [`profiles_config`]
//! and [`gateway_config`] (tests change the gateway's through
//! [`Options::tweak`]). Assertions on error details come from
//! `rapport_testkit::status`.

use std::{collections::BTreeMap, net::SocketAddr};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt as _, Full};
use rapport_gateway::{auth::api_keys::NewKey, backends::BackendConfig};
use rapport_kit::ServerConfig;
pub use rapport_proto::{gateway as gw, profiles as pb};
use rapport_testkit::{Running, TEST_ASSERTION_PRIVATE_KEY, TEST_SECRET, TestDb};
use tonic::{metadata::MetadataValue, transport::Channel};

/// Profiles client through the gateway.
pub type Profiles = pb::profiles_service_client::ProfilesServiceClient<Channel>;
/// Admin client through the gateway.
pub type Admin = gw::gateway_admin_service_client::GatewayAdminServiceClient<Channel>;

/// A running stack. Field order is drop order.
pub struct Stack {
    /// Channel to the gateway.
    pub channel: Channel,
    /// Gateway address.
    pub gateway: SocketAddr,
    /// Profiles address (for direct-call tests).
    pub profiles: SocketAddr,
    /// Where the gateway serves `/metrics`.
    pub metrics: SocketAddr,
    /// Platform admin key (tenant `acme`).
    pub admin_key: String,
    /// The gateway's database (to look at the audit log or take it away).
    pub gateway_db: rapport_store::Db,
    /// Which database the stack runs on: `sqlite` or `postgres`.
    pub backend: &'static str,
    keys: std::sync::Arc<rapport_gateway::auth::api_keys::ApiKeys>,
    // Held for their Drop: the gateway stops first, then profiles, and the
    // databases go last.
    _gateway_running: Option<Running>,
    _profiles_running: Option<Running>,
    _dbs: Vec<TestDb>,
}

/// A change to the gateway configuration of a test stack.
pub type Tweak = std::sync::Arc<dyn Fn(&mut rapport_gateway::Config) + Send + Sync>;

/// Options of a stack.
#[derive(Default, Clone)]
pub struct Options {
    /// Gateway configuration tweaks.
    pub tweak: Option<Tweak>,
}

/// The configuration of the profiles service of a stack: listening on
/// `127.0.0.1:0`, over `db` (migrated at start), with the test secrets. The
/// only place the whole-stack tests build a profiles `Config`.
pub fn profiles_config(db: &TestDb) -> rapport_profiles::Config {
    rapport_profiles::Config {
        server: rapport_testkit::server_config(),
        database: rapport_testkit::database_config(db),
        page_token_secret: TEST_SECRET.into(),
        assertion_public_keys: rapport_testkit::test_assertion_public_key(),
        events: Default::default(),
        ..Default::default()
    }
}

/// The configuration of the gateway of a stack, before [`Options::tweak`]:
/// listening on `127.0.0.1:0` (metrics too), over `db` (migrated at start),
/// routing the profiles service to `profiles`, with the test secrets. The
/// only place the whole-stack tests build a gateway `Config`.
pub fn gateway_config(db: &TestDb, profiles: SocketAddr) -> rapport_gateway::Config {
    rapport_gateway::Config {
        server: ServerConfig {
            default_timeout_ms: 30_000,
            max_message_bytes: 4 * 1024 * 1024,
            ..rapport_testkit::server_config()
        },
        database: rapport_testkit::database_config(db),
        backends: BTreeMap::from([(
            "rapport.profiles.v1.ProfilesService".to_owned(),
            BackendConfig {
                endpoints: vec![format!("http://{profiles}")],
                connections: 2,
            },
        )]),
        assertion_key: TEST_ASSERTION_PRIVATE_KEY.into(),
        page_token_secret: TEST_SECRET.into(),
        cors_origins: vec!["https://app.example.com".into()],
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        backend_concurrency: rapport_gateway::adaptive::AdaptiveConfig {
            // Test binaries share two cores with each other: the scheduling
            // delay there measures the harness, not the gateway.
            max_scheduling_delay_ms: 0,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A stack with the gateway configured as [`gateway_config`] says.
pub async fn start() -> Stack {
    start_with(Options::default()).await
}

/// A stack whose gateway configuration `options` changes.
pub async fn start_with(options: Options) -> Stack {
    let profiles_db = TestDb::fresh().await.expect("profiles database");
    let gateway_db = TestDb::fresh().await.expect("gateway database");
    let profiles = rapport_profiles::build(
        &profiles_config(&profiles_db),
        &rapport_events::Bus::in_process(),
    )
    .await
    .expect("building profiles");
    let profiles_addr = profiles.local_addr();
    let profiles_running = Running::start(move |s| profiles.serve(s));

    let mut config = gateway_config(&gateway_db, profiles_addr);
    if let Some(tweak) = &options.tweak {
        tweak(&mut config);
    }
    let gateway = rapport_gateway::build(&config)
        .await
        .expect("building the gateway");
    let gateway_addr = gateway.local_addr();
    let metrics = gateway.metrics_addr().expect("metrics listener");
    let keys = gateway.keys().clone();
    let gateway_db_handle = gateway.db().clone();
    let backend = gateway_db.backend_name();
    let gateway_running = Running::start(move |s| gateway.serve(s));
    let admin_key = issue(&keys, "acme", &["admin", "platform"], None, 0).await;
    let channel = rapport_testkit::connect(gateway_addr)
        .await
        .expect("connecting to the gateway");
    Stack {
        channel,
        gateway: gateway_addr,
        profiles: profiles_addr,
        metrics,
        admin_key,
        gateway_db: gateway_db_handle,
        backend,
        keys,
        _gateway_running: Some(gateway_running),
        _profiles_running: Some(profiles_running),
        _dbs: vec![profiles_db, gateway_db],
    }
}

/// Issues a key straight through the key store.
pub async fn issue(
    keys: &rapport_gateway::auth::api_keys::ApiKeys,
    tenant: &str,
    scopes: &[&str],
    expire_time: Option<DateTime<Utc>>,
    rate_limit: u32,
) -> String {
    keys.issue(
        NewKey {
            display_name: format!("test key of {tenant}"),
            tenant: tenant.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expire_time,
            rate_limit,
        },
        Utc::now(),
        None,
    )
    .await
    .expect("issuing a key")
    .secret
}

impl Stack {
    /// A key of `tenant` with `scopes`.
    pub async fn key(&self, tenant: &str, scopes: &[&str]) -> String {
        issue(&self.keys, tenant, scopes, None, 0).await
    }

    /// A key with its own rate limit.
    pub async fn limited_key(&self, tenant: &str, per_second: u32) -> String {
        issue(
            &self.keys,
            tenant,
            &["profiles.read", "profiles.write"],
            None,
            per_second,
        )
        .await
    }

    /// A key that expired a minute ago.
    pub async fn expired_key(&self, tenant: &str) -> String {
        issue(
            &self.keys,
            tenant,
            &["profiles.read"],
            Some(Utc::now() - chrono::Duration::minutes(1)),
            0,
        )
        .await
    }

    /// The gateway's API key verifier (its cache statistics).
    pub fn keys(&self) -> &rapport_gateway::auth::api_keys::ApiKeys {
        &self.keys
    }

    /// A profiles client through the gateway.
    pub fn profiles(&self) -> Profiles {
        Profiles::new(self.channel.clone())
    }

    /// An admin client through the gateway.
    pub fn admin(&self) -> Admin {
        Admin::new(self.channel.clone())
    }
}

/// A request with `authorization: Bearer {key}`.
pub fn with_key<T>(key: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let v: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
    r.metadata_mut().insert("authorization", v);
    r
}

/// A customer with a display name and one email.
pub fn customer(name: &str, email: &str) -> pb::Customer {
    pb::Customer {
        display_name: name.into(),
        emails: vec![pb::EmailAddress {
            address: email.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A plain HTTP/1.1 response.
pub struct HttpResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub trailers: Option<http::HeaderMap>,
}

impl HttpResponse {
    /// The body as JSON, panicking with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request on a fresh connection, as curl would send it.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> HttpResponse {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("http1 handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    HttpResponse {
        status,
        headers,
        body: collected.to_bytes(),
        trailers,
    }
}
