//! rapport-testkit: what service integration tests share — a fresh database per
//! test (SQLite by default, PostgreSQL when `RAPPORT_TEST_POSTGRES_URL` is set),
//! a server configuration on a free port ([`server_config`]), a handle that
//! serves a bound service and shuts it down, gRPC client helpers, assertions on
//! AIP-193 error details ([`status`]) and readers of the outbox and
//! idempotency tables ([`store`]). It is a dev-dependency only and must not
//! depend on any service: each service's test harness (which builds that
//! service's `Config`) lives with that service's tests.
#![forbid(unsafe_code)]

pub mod receiver;
pub mod smtp;
pub mod status;
pub mod store;
pub mod trace;

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use sea_orm::{ConnectOptions, ConnectionTrait as _, Database};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

/// Environment variable that switches tests to PostgreSQL: the URL of a server
/// and a database the role may connect to, with the right to create databases,
/// e.g. `postgres://rapport:rapport@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL_ENV: &str = "RAPPORT_TEST_POSTGRES_URL";

/// Page-token secret for services under test (fixed, so failures reproduce;
/// never used outside tests).
pub const TEST_SECRET: &str = "rapport-test-page-token-secret-0123456789";

/// The tenant metadata key (kept in step with `rapport_kit::context`).
pub const TENANT_HEADER: &str = rapport_kit::context::TENANT_HEADER;

/// The server configuration of a service under test: listening on
/// `127.0.0.1:0` (a free port, known once bound), defaults otherwise.
pub fn server_config() -> rapport_kit::ServerConfig {
    rapport_kit::ServerConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        // No load balancer to wait for: a test's shutdown drains at once.
        shutdown_delay_ms: 0,
        ..Default::default()
    }
}

/// The `database` section of a service under test: `db`, migrated at start.
pub fn database_config(db: &TestDb) -> rapport_store::DatabaseConfig {
    rapport_store::DatabaseConfig {
        url: db.url(),
        migrate: true,
        pool: Default::default(),
    }
}

/// A database that exists for one test only.
///
/// SQLite: a file in a temporary directory removed on drop. PostgreSQL: a
/// database `rapport_t_<uuid>` created on the server named by
/// [`POSTGRES_URL_ENV`] and dropped (forcibly) on drop.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Sqlite {
        // Held for its Drop, which removes the directory.
        _dir: tempfile::TempDir,
    },
    Postgres {
        admin_url: String,
        database: String,
    },
}

impl TestDb {
    /// A new, empty database on the backend chosen by the environment.
    pub async fn fresh() -> anyhow::Result<Self> {
        match std::env::var(POSTGRES_URL_ENV) {
            Ok(admin_url) if !admin_url.trim().is_empty() => Self::postgres(admin_url).await,
            _ => Self::sqlite(),
        }
    }

    fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rapport-test-")
            .tempdir()
            .context("creating a temporary directory for SQLite")?;
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Ok(Self {
            url,
            backend: Backend::Sqlite { _dir: dir },
        })
    }

    async fn postgres(admin_url: String) -> anyhow::Result<Self> {
        let database = format!("rapport_t_{}", uuid::Uuid::now_v7().simple());
        let url = with_database(&admin_url, &database)?;
        let admin = admin_connection(&admin_url)
            .await
            .with_context(|| format!("connecting to {POSTGRES_URL_ENV}"))?;
        let created = admin
            .execute_unprepared(&format!("CREATE DATABASE \"{database}\""))
            .await
            .with_context(|| format!("creating test database {database}"));
        let _ = admin.close().await;
        created?;
        Ok(Self {
            url,
            backend: Backend::Postgres {
                admin_url,
                database,
            },
        })
    }

    /// The URL a service under test connects to.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// `"sqlite"` or `"postgres"`, for messages.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres { .. } => "postgres",
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Backend::Postgres {
            admin_url,
            database,
        } = &self.backend
        else {
            return;
        };
        // Drop runs inside the test's runtime, which must not be blocked on
        // itself: drop the database from a thread with its own runtime, and
        // wait a bounded time so a test run does not leak databases.
        let (admin_url, database) = (admin_url.clone(), database.clone());
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("testdb-drop".to_owned())
            .spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(drop_postgres_database(&admin_url, &database));
                }
                let _ = done_tx.send(());
            });
        if spawned.is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(15));
        }
    }
}

async fn admin_connection(admin_url: &str) -> Result<sea_orm::DatabaseConnection, sea_orm::DbErr> {
    let mut options = ConnectOptions::new(admin_url.to_owned());
    options
        .max_connections(1)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    Database::connect(options).await
}

/// Best effort: errors are ignored, a leftover `rapport_t_*` database is
/// harmless and easy to spot.
async fn drop_postgres_database(admin_url: &str, database: &str) {
    let Ok(admin) = admin_connection(admin_url).await else {
        return;
    };
    // WITH (FORCE) (PostgreSQL 13+) ends the pool connections the service
    // under test may still hold; older servers reject the clause, so retry
    // without it.
    let forced = admin
        .execute_unprepared(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .await;
    if forced.is_err() {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{database}\""))
            .await;
    }
    let _ = admin.close().await;
}

/// `url` with its database (path) replaced by `database`, keeping the query.
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    rapport_store::with_database(url, database)
        .with_context(|| format!("{POSTGRES_URL_ENV} is not a URL"))
}

/// The future a served service waits on: it resolves when the test asks for
/// shutdown, or when the [`Running`] handle is dropped.
#[derive(Debug)]
pub struct ShutdownSignal(oneshot::Receiver<()>);

impl Future for ShutdownSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A dropped sender also means "stop".
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A service being served on the test's runtime.
#[derive(Debug)]
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Spawns `serve(shutdown)`, e.g.
    /// `Running::start(|shutdown| profiles.serve(shutdown))`. The service must
    /// already be bound, so clients can connect as soon as this returns.
    pub fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(ShutdownSignal) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, signal) = oneshot::channel();
        let task = tokio::spawn(serve(ShutdownSignal(signal)));
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits until the service has drained and returned
    /// its result. A panic inside the service is propagated.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(result) => result,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => Err(anyhow::anyhow!("service task cancelled: {join}")),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Cannot await here: signal, and let the task drain on its own (the
        // runtime cancels it when the test ends).
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A channel connected (eagerly) to `http://{addr}`.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))
        .context("building the endpoint")?
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// The (simulated) gateway's private key in tests: the base64url seed of an
/// Ed25519 key (fixed, so failures reproduce; never used outside tests).
/// Services under test accept [`test_assertion_public_key`].
pub const TEST_ASSERTION_PRIVATE_KEY: &str = "cmFwcG9ydC10ZXN0LWFzc2VydGlvbi1zZWVkLTAxMjM";

/// The public key of [`TEST_ASSERTION_PRIVATE_KEY`]: a service's
/// `assertion_public_keys` in tests.
pub fn test_assertion_public_key() -> String {
    test_signer().public_key()
}

fn test_signer() -> rapport_kit::AssertionSigner {
    rapport_kit::AssertionSigner::from_base64(TEST_ASSERTION_PRIVATE_KEY)
        .expect("the test key is a valid seed")
}

/// A request carrying `msg` and an assertion for `tenant`, made by the test
/// gateway's key as the gateway makes it: for the RPC whose request message
/// `msg` is, with the scope that RPC declares. The tenant is not validated
/// here, so tests can assert what services do with bad ones.
pub fn tenant_request<T: prost::Name>(tenant: &str, msg: T) -> tonic::Request<T> {
    with_assertion(&test_signer(), tenant, msg)
}

/// Like [`tenant_request`] but signed with another private key (a forgery):
/// its seed is the first 32 bytes of `key`.
pub fn signed_request<T: prost::Name>(key: &[u8], tenant: &str, msg: T) -> tonic::Request<T> {
    let seed: [u8; 32] = key
        .get(..32)
        .and_then(|k| k.try_into().ok())
        .expect("test keys are at least 32 bytes");
    let signer = rapport_kit::AssertionSigner::from_base64(&base64_url(&seed))
        .expect("any 32 bytes are a seed");
    with_assertion(&signer, tenant, msg)
}

/// The claims the gateway would assert for a call of `path` by `tenant`
/// with `scopes`, valid for five minutes.
pub fn claims_for(path: &str, tenant: &str, scopes: &[&str]) -> rapport_kit::assertion::Claims {
    rapport_kit::assertion::Claims {
        tenant: tenant.to_owned(),
        principal: "test".to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        expires: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64 + 300)
            .unwrap_or(i64::MAX),
        audience: rapport_kit::assertion::Claims::audience_of(path)
            .unwrap_or_default()
            .to_owned(),
        method: path.to_owned(),
    }
}

/// `msg` in a request carrying the assertion `claims` signed by the test
/// gateway's key (for tests of what services refuse: another method's
/// assertion, a missing scope, an expired one).
pub fn request_with_claims<T>(
    claims: &rapport_kit::assertion::Claims,
    msg: T,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(msg);
    let value: MetadataValue<_> = test_signer()
        .sign(claims)
        .parse()
        .expect("an assertion is valid ASCII metadata");
    request
        .metadata_mut()
        .insert(rapport_kit::assertion::ASSERTION_HEADER, value);
    request
}

fn with_assertion<T: prost::Name>(
    signer: &rapport_kit::AssertionSigner,
    tenant: &str,
    msg: T,
) -> tonic::Request<T> {
    let request_type = T::full_name();
    let method = rapport_proto::methods::by_request(&request_type)
        .unwrap_or_else(|| panic!("{request_type} is the request of no RPC"));
    let claims = claims_for(method.path, tenant, &[method.scope]);
    let mut request = tonic::Request::new(msg);
    let value: MetadataValue<_> = signer
        .sign(&claims)
        .parse()
        .expect("an assertion is valid ASCII metadata");
    request
        .metadata_mut()
        .insert(rapport_kit::assertion::ASSERTION_HEADER, value);
    request
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A request that only claims a tenant with the `x-rapport-tenant` header, as
/// a client trying to spoof one would. Services must refuse it.
pub fn spoofed_tenant_request<T>(tenant: &str, msg: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(msg);
    let value: MetadataValue<_> = tenant.parse().expect("ASCII tenant");
    request.metadata_mut().insert(TENANT_HEADER, value);
    request
}

/// Sends `body` as the request message of the unary RPC at `path`, bytes as
/// they are: for requests no generated client would send (malformed
/// messages). Answers the response message's bytes.
pub async fn raw_unary(
    channel: Channel,
    path: &'static str,
    request: tonic::Request<Vec<u8>>,
) -> Result<tonic::Response<Vec<u8>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        request,
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
}

/// A codec that passes message bytes through untouched.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "t1").unwrap(),
            "postgres://u:p@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@db/postgres?sslmode=disable", "t1").unwrap(),
            "postgres://u:p@db/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://db:5432", "t1").unwrap(),
            "postgresql://db:5432/t1"
        );
        assert!(with_database("not a url", "t1").is_err());
    }

    #[test]
    fn the_server_config_listens_on_a_free_loopback_port() {
        let config = server_config();
        assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
        let defaults = rapport_kit::ServerConfig::default();
        assert_eq!(config.default_timeout_ms, defaults.default_timeout_ms);
        assert_eq!(config.max_message_bytes, defaults.max_message_bytes);
    }

    #[test]
    fn the_test_secret_is_long_enough() {
        assert!(TEST_SECRET.len() >= 32);
    }

    #[tokio::test]
    async fn sqlite_test_dbs_are_distinct_and_removed() {
        // Only meaningful on the default backend.
        if std::env::var(POSTGRES_URL_ENV).is_ok() {
            return;
        }
        let a = TestDb::fresh().await.unwrap();
        let b = TestDb::fresh().await.unwrap();
        assert_eq!(a.backend_name(), "sqlite");
        assert_ne!(a.url(), b.url());
        let path = a.url().trim_start_matches("sqlite://").to_owned();
        let dir = std::path::Path::new(&path).parent().unwrap().to_owned();
        assert!(dir.exists());
        drop(a);
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn postgres_test_dbs_are_created_and_dropped() {
        let Ok(admin_url) = std::env::var(POSTGRES_URL_ENV) else {
            return;
        };
        let db = TestDb::fresh().await.unwrap();
        assert_eq!(db.backend_name(), "postgres");
        let conn = admin_connection(&db.url()).await.unwrap();
        conn.execute_unprepared("CREATE TABLE t (id INT)")
            .await
            .unwrap();
        let name = db.url().rsplit('/').next().unwrap().to_owned();
        // The open connection must not keep the database alive.
        drop(db);
        let admin = admin_connection(&admin_url).await.unwrap();
        let left = admin
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(left.try_get_by_index::<i64>(0).unwrap(), 0);
        let _ = conn.close().await;
    }

    #[tokio::test]
    async fn running_shutdown_resolves_the_signal() {
        let running = Running::start(|shutdown| async move {
            shutdown.await;
            Ok(())
        });
        running.shutdown().await.unwrap();
    }

    #[test]
    fn tenant_request_carries_a_verifiable_assertion() {
        let request = tenant_request(
            "acme",
            rapport_proto::profiles::GetCustomerRequest::default(),
        );
        let keys =
            rapport_kit::AssertionVerifier::from_base64_list(&test_assertion_public_key()).unwrap();
        let ctx = rapport_kit::TenantGuard::new(keys)
            .verify(
                request.metadata(),
                "/rapport.profiles.v1.ProfilesService/GetCustomer",
            )
            .unwrap();
        assert_eq!(ctx.tenant.as_str(), "acme");
        assert!(request.metadata().get(TENANT_HEADER).is_none());
    }
}
