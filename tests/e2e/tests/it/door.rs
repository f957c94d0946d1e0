//! The front door under abuse: guessed keys, unauthenticated bodies, NUL
//! bytes, an audit database that goes away, exports, tenant capacity, a busy
//! machine, and the shapes of the door's own errors.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use rapport_e2e::*;
use rapport_testkit::status::{assert_error, assert_violation};
use sea_orm::ConnectionTrait as _;
use tonic::Code;
use tonic_types::StatusExt as _;

/// Every audit record the admin API lists, oldest last.
async fn audit_log(s: &Stack) -> Vec<gw::AuditEvent> {
    let mut admin = s.admin();
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_audit_events(with_key(
                &s.admin_key,
                gw::ListAuditEventsRequest {
                    page_size: 500,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("listing the audit log")
            .into_inner();
        all.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// Lists the audit log until `done` holds of it (the writer is
/// asynchronous, and retries with backoff after an outage).
async fn audit_log_until(
    s: &Stack,
    done: impl Fn(&[gw::AuditEvent]) -> bool,
) -> Vec<gw::AuditEvent> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = audit_log(s).await;
        if done(&log) || Instant::now() > deadline {
            return log;
        }
        // Polling a condition, within the admin key's rate limit.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn random_key() -> String {
    // The random half of a UUIDv7: sixteen hex digits that differ each time.
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("rk_{}_{}", &id[16..], "A".repeat(43))
}

#[tokio::test]
async fn ten_thousand_guessed_keys_cost_bounded_memory_and_reads_and_real_keys_keep_working() {
    const LOOKUPS_PER_SECOND: u32 = 20;
    let s = start_with(Options {
        tweak: Some(Arc::new(|c: &mut rapport_gateway::Config| {
            c.key_cache.entries = 100;
            c.key_cache.unknown_entries = 64;
            c.key_cache.unknown_lookups_per_second = LOOKUPS_PER_SECOND;
            // The flood comes from one tenant-less client; rate limits
            // apply to principals, which it never becomes.
        })),
    })
    .await;
    let key = s.key("acme", &["profiles.read", "profiles.write"]).await;
    let mut p = s.profiles();
    p.list_customers(with_key(&key, pb::ListCustomersRequest::default()))
        .await
        .expect("a real key works");
    let before = s.keys().cache_stats();

    let started = Instant::now();
    let refused: Vec<tonic::Status> = futures::stream::iter(0..10_000)
        .map(|_| {
            let mut p = p.clone();
            async move {
                p.list_customers(with_key(&random_key(), pb::ListCustomersRequest::default()))
                    .await
                    .expect_err("a guessed key is refused")
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let elapsed = started.elapsed();
    // Refused as unknown, throttled, or (when the key store is slow to
    // answer, as on a machine shared with the other tests) unavailable.
    let refusal = |e: &tonic::Status| {
        matches!(e.code(), Code::Unauthenticated | Code::ResourceExhausted)
            || rapport_testkit::status::reason(e).as_deref() == Some("AUTH_UNAVAILABLE")
    };
    let other: Vec<_> = refused.iter().filter(|e| !refusal(e)).take(3).collect();
    assert!(other.is_empty(), "every guess is refused: {other:?}");
    let stats = s.keys().cache_stats();
    assert!(
        stats.known <= 100 && stats.unknown <= 64,
        "caches stay within bounds: {stats:?}"
    );
    let reads = stats.store_reads - before.store_reads;
    let budget = u64::from(LOOKUPS_PER_SECOND) * (2 + elapsed.as_secs() + 1);
    assert!(
        reads <= budget,
        "guessed keys cost at most the lookup budget in store reads: {reads} > {budget}"
    );

    // The real key still works, and its write is on the record.
    let created = p
        .create_customer(with_key(
            &key,
            pb::CreateCustomerRequest {
                customer: Some(customer("Ada", "ada@example.com")),
                request_id: "after-the-flood".into(),
            },
        ))
        .await
        .expect("a real key works after the flood")
        .into_inner()
        .customer
        .unwrap();
    let log = audit_log_until(&s, |log| {
        log.iter()
            .filter(|e| e.principal.is_empty())
            .map(|e| e.count)
            .sum::<i64>()
            >= 10_000
    })
    .await;
    assert!(
        log.iter()
            .any(|e| e.method.ends_with("/CreateCustomer") && e.code == "OK"),
        "the authenticated write is audited"
    );
    let refusals: Vec<_> = log.iter().filter(|e| e.principal.is_empty()).collect();
    assert_eq!(
        refusals.iter().map(|e| e.count).sum::<i64>(),
        10_000,
        "every refused guess is counted"
    );
    assert!(
        refusals.len() < 1_000,
        "refusals are aggregated, not one row each: {}",
        refusals.len()
    );
    assert!(!created.name.is_empty());
}

/// An HTTP/2 request whose body sends `first` bytes, then nothing more.
async fn h2_stalled_body(
    s: &Stack,
    path: &str,
    headers: &[(&str, &str)],
    first: usize,
    announced: usize,
) -> http::Response<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(s.gateway).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let chunk = bytes::Bytes::from(vec![b' '; first]);
    let body = http_body_util::StreamBody::new(
        futures::stream::iter([Ok::<_, std::convert::Infallible>(http_body::Frame::data(
            chunk,
        ))])
        .chain(futures::stream::pending()),
    );
    let mut req = http::Request::post(format!("http://{}{path}", s.gateway))
        .header("content-type", "application/json")
        .header("content-length", announced.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    // Not answering within a minute is the failure: before the fix the
    // gateway waited for the body that never comes.
    tokio::time::timeout(
        Duration::from_secs(60),
        sender.send_request(req.body(body).unwrap()),
    )
    .await
    .expect("answered without the rest of the body")
    .expect("a response")
}

async fn json_of(resp: http::Response<hyper::body::Incoming>) -> serde_json::Value {
    use http_body_util::BodyExt as _;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

fn body_violation(json: &serde_json::Value) -> Option<String> {
    json["error"]["details"]
        .as_array()?
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .and_then(|d| d["fieldViolations"][0]["field"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn rest_bodies_are_read_only_for_authorized_callers_within_limits() {
    let s = start_with(Options {
        tweak: Some(Arc::new(|c: &mut rapport_gateway::Config| {
            c.body_read_timeout_ms = 300;
        })),
    })
    .await;
    const FOUR_MIB: usize = 4 * 1024 * 1024;

    // No credentials: refused on its headers, the 4 MiB never read.
    let resp = h2_stalled_body(&s, "/v1/customers", &[], 64 * 1024, FOUR_MIB).await;
    assert_eq!(resp.status(), 401);
    // A guessed key: the same.
    let guess = format!("Bearer {}", random_key());
    let resp = h2_stalled_body(
        &s,
        "/v1/customers",
        &[("authorization", &guess)],
        64 * 1024,
        FOUR_MIB,
    )
    .await;
    assert_eq!(resp.status(), 401);
    // A key without the scope: refused before the body too.
    let reader = format!("Bearer {}", s.key("acme", &["profiles.read"]).await);
    let resp = h2_stalled_body(
        &s,
        "/v1/customers",
        &[("authorization", &reader)],
        64 * 1024,
        FOUR_MIB,
    )
    .await;
    assert_eq!(resp.status(), 403);

    // An authorized caller trickling its body is cut off by the body-read
    // timeout, not held until the call's deadline.
    let writer = format!("Bearer {}", s.key("acme", &["profiles.write"]).await);
    let resp = h2_stalled_body(
        &s,
        "/v1/customers",
        &[("authorization", &writer), ("grpc-timeout", "30S")],
        10,
        1000,
    )
    .await;
    assert_eq!(resp.status(), 408);
    assert_eq!(json_of(resp).await["error"]["status"], "DEADLINE_EXCEEDED");

    // Over the size limit: 413 with a violation naming the body.
    let big = vec![b' '; FOUR_MIB + 1];
    let resp = http(
        s.gateway,
        "POST",
        "/v1/customers",
        &[
            ("authorization", &writer),
            ("content-type", "application/json"),
        ],
        big,
    )
    .await;
    assert_eq!(resp.status, 413);
    let json = resp.json();
    assert_eq!(json["error"]["details"][0]["reason"], "REQUEST_TOO_LARGE");
    assert_eq!(body_violation(&json).as_deref(), Some("body"));

    // Not JSON, and not a JSON media type: violations naming the body.
    let resp = http(
        s.gateway,
        "POST",
        "/v1/customers",
        &[
            ("authorization", &writer),
            ("content-type", "application/json"),
        ],
        "{not json",
    )
    .await;
    assert_eq!(resp.status, 400);
    let json = resp.json();
    assert_eq!(json["error"]["details"][0]["reason"], "INVALID_JSON");
    assert_eq!(body_violation(&json).as_deref(), Some("body"));
    let resp = http(
        s.gateway,
        "POST",
        "/v1/customers",
        &[("authorization", &writer), ("content-type", "text/plain")],
        "hello",
    )
    .await;
    assert_eq!(resp.status, 415);
    let json = resp.json();
    assert_eq!(
        json["error"]["details"][0]["reason"],
        "UNSUPPORTED_MEDIA_TYPE"
    );
    assert_eq!(body_violation(&json).as_deref(), Some("body"));

    // A well-formed create still works, read straight into the message.
    let resp = http(
        s.gateway,
        "POST",
        "/v1/customers?requestId=rest-ok",
        &[
            ("authorization", &writer),
            ("content-type", "application/json"),
        ],
        r#"{"displayName":"Ada","emails":[{"address":"ada@example.com"}]}"#,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}

#[tokio::test]
async fn the_body_budget_sheds_instead_of_buffering_without_end() {
    let s = start_with(Options {
        tweak: Some(Arc::new(|c: &mut rapport_gateway::Config| {
            // Room for one 4 MiB message (the floor), no more.
            c.body_budget_bytes = 1;
        })),
    })
    .await;
    let writer = format!("Bearer {}", s.key("acme", &["profiles.write"]).await);
    // REST bodies are charged twice: a 3 MiB one does not fit a 4 MiB budget.
    let resp = http(
        s.gateway,
        "POST",
        "/v1/customers",
        &[
            ("authorization", &writer),
            ("content-type", "application/json"),
        ],
        vec![b' '; 3 * 1024 * 1024],
    )
    .await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.json()["error"]["details"][0]["reason"], "OVERLOADED");
    // Small bodies pass.
    let resp = http(
        s.gateway,
        "POST",
        "/v1/customers?requestId=small",
        &[
            ("authorization", &writer),
            ("content-type", "application/json"),
        ],
        r#"{"displayName":"Ada"}"#,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}

#[tokio::test]
async fn nul_bytes_and_an_audit_outage_lose_no_record() {
    let s = start().await;
    let writer = s
        .key(
            "acme",
            &["profiles.write", "profiles.read", "profiles.erase"],
        )
        .await;
    let bearer = format!("Bearer {writer}");
    let json = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];

    // The audit table goes away for a while.
    let db = &s.gateway_db.writer;
    db.execute_unprepared("ALTER TABLE audit_events RENAME TO audit_events_away")
        .await
        .expect("taking the audit table away");

    let mut expected = Vec::new();
    for i in 0..10 {
        let id = format!("outage-{i}");
        let resp = http(
            s.gateway,
            "POST",
            &format!("/v1/customers?requestId={id}"),
            &json,
            format!(r#"{{"displayName":"Ada {i}"}}"#),
        )
        .await;
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        expected.push(id);
        // NUL in a query value or a path variable is refused at the door,
        // naming the field, with or without a key.
        for (path, headers, field) in [
            (
                format!("/v1/customers?requestId=nul%00{i}"),
                &json[..],
                "requestId",
            ),
            (format!("/v1/customers/x%00{i}:erase"), &json[..], "name"),
            (format!("/v1/customers/x%00{i}:erase"), &json[1..], ""),
        ] {
            let resp = http(s.gateway, "POST", &path, headers, "{}").await;
            if field.is_empty() {
                assert_eq!(resp.status, 401, "{path}");
            } else {
                assert_eq!(resp.status, 400, "{path}");
                assert_eq!(
                    body_violation(&resp.json()).as_deref(),
                    Some(field),
                    "{path}"
                );
            }
        }
        // NUL inside the JSON body reaches the call and its audit record.
        let resp = http(
            s.gateway,
            "POST",
            &format!("/v1/customers/x{i}:erase"),
            &json,
            format!(r#"{{"requestId":"e\u0000{i}"}}"#),
        )
        .await;
        assert!(resp.status >= 400, "erasing no one: {}", resp.status);
    }
    // The writer has tried (and failed) while the table was away: a reader
    // waits for the queue before it reads, and then finds no table.
    let away = s
        .admin()
        .list_audit_events(with_key(
            &s.admin_key,
            gw::ListAuditEventsRequest::default(),
        ))
        .await;
    assert!(away.is_err(), "the audit table is away");

    db.execute_unprepared("ALTER TABLE audit_events_away RENAME TO audit_events")
        .await
        .expect("bringing the audit table back");
    let log = audit_log_until(&s, |log| {
        expected
            .iter()
            .all(|id| log.iter().any(|e| &e.request_id == id))
    })
    .await;
    for id in &expected {
        assert!(
            log.iter().any(|e| &e.request_id == id && e.code == "OK"),
            "{id}: the create is audited after the outage ({})",
            s.backend
        );
    }
    // The NUL-carrying requests of authenticated callers are there too,
    // their NUL replaced.
    for i in 0..10 {
        let request_id = format!("e\u{FFFD}{i}");
        assert!(
            log.iter()
                .any(|e| e.resource == format!("customers/x{i}") && e.request_id == request_id),
            "{request_id}: audited ({})",
            s.backend
        );
    }
    assert!(
        log.iter()
            .all(|e| !e.request_id.contains('\0') && !e.resource.contains('\0')),
        "no NUL is stored"
    );
}

#[tokio::test]
async fn old_audit_records_are_purged_in_bounded_batches() {
    // The hourly task off: this test purges by hand.
    let s = start_with(Options {
        tweak: Some(Arc::new(|c: &mut rapport_gateway::Config| {
            c.audit_retention_days = 0;
        })),
    })
    .await;
    let store = rapport_gateway::storage::Store::new(s.gateway_db.clone());
    let record = |days_ago: i64, id: &str| rapport_gateway::storage::AuditRecord {
        id: id.to_owned(),
        event_time: chrono::Utc::now() - chrono::Duration::days(days_ago),
        tenant: "acme".into(),
        principal: "apiKeys/x".into(),
        method: "/m".into(),
        resource: String::new(),
        request_id: String::new(),
        code: "OK".into(),
        protocol: "grpc".into(),
        count: 1,
    };
    store
        .append_audit(&[
            record(800, "old-1"),
            record(700, "old-2"),
            record(600, "old-3"),
            record(1, "young"),
        ])
        .await
        .unwrap();
    let before = chrono::Utc::now() - chrono::Duration::days(400);
    assert_eq!(
        store.purge_audit(before, 2).await.unwrap(),
        2,
        "one bounded batch"
    );
    assert_eq!(store.purge_audit(before, 2).await.unwrap(), 1);
    assert_eq!(store.purge_audit(before, 2).await.unwrap(), 0);
    let left: Vec<String> = audit_log(&s).await.into_iter().map(|e| e.name).collect();
    assert!(left.contains(&"auditEvents/young".to_owned()), "{left:?}");
    assert!(!left.iter().any(|n| n.contains("old-")), "{left:?}");
}

#[tokio::test]
async fn exports_of_personal_data_are_audited() {
    let s = start().await;
    let key = s
        .key(
            "acme",
            &["profiles.read", "profiles.write", "profiles.export"],
        )
        .await;
    let mut p = s.profiles();
    let created = p
        .create_customer(with_key(
            &key,
            pb::CreateCustomerRequest {
                customer: Some(customer("Ada", "ada@example.com")),
                request_id: "export-1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    p.export_customer_data(with_key(
        &key,
        pb::ExportCustomerDataRequest {
            name: created.name.clone(),
        },
    ))
    .await
    .expect("export over gRPC");
    let resp = http(
        s.gateway,
        "GET",
        &format!("/v1/{}:export", created.name),
        &[("authorization", &format!("Bearer {key}"))],
        "",
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    // A plain read is not on the record.
    p.get_customer(with_key(
        &key,
        pb::GetCustomerRequest {
            name: created.name.clone(),
        },
    ))
    .await
    .unwrap();

    let log = audit_log(&s).await;
    let exports: Vec<_> = log
        .iter()
        .filter(|e| e.method.ends_with("/ExportCustomerData"))
        .collect();
    assert_eq!(exports.len(), 2, "both exports are audited: {exports:?}");
    assert!(exports.iter().all(|e| e.code == "OK" && e.tenant == "acme"));
    assert!(
        exports
            .iter()
            .any(|e| e.protocol == "rest" && e.resource == created.name)
    );
    assert!(!log.iter().any(|e| e.method.ends_with("/GetCustomer")));
}

#[tokio::test]
async fn tenant_admins_cannot_raise_rates_or_mint_keys_without_end() {
    let s = start_with(Options {
        tweak: Some(Arc::new(|c: &mut rapport_gateway::Config| {
            c.tenant_limits.max_keys = 3;
            c.tenant_limits.max_key_per_second = 50;
        })),
    })
    .await;
    let tenant_admin = s.key("globex", &["admin"]).await;
    let mut admin = s.admin();
    let create = |rate: i32, n: usize| gw::CreateApiKeyRequest {
        api_key: Some(gw::ApiKey {
            display_name: format!("key {n}"),
            tenant: "globex".into(),
            scopes: vec!["profiles.read".into()],
            rate_limit_per_second: rate,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let err = admin
        .create_api_key(with_key(&tenant_admin, create(1_000_000, 0)))
        .await
        .unwrap_err();
    assert_violation(&err, "api_key.rate_limit_per_second");
    // The platform may.
    admin
        .create_api_key(with_key(&s.admin_key, create(1_000_000, 0)))
        .await
        .expect("platform raises a key's rate");
    // globex has its admin key and the platform's: one more, then no more.
    admin
        .create_api_key(with_key(&tenant_admin, create(50, 1)))
        .await
        .expect("under the cap");
    let err = admin
        .create_api_key(with_key(&tenant_admin, create(50, 2)))
        .await
        .unwrap_err();
    assert_error(&err, Code::ResourceExhausted, "API_KEY_QUOTA_EXCEEDED");

    // NUL in admin input is invalid input, not an internal error.
    let mut nul = create(1, 3);
    nul.api_key.as_mut().unwrap().display_name = "a\0b".into();
    let err = admin
        .create_api_key(with_key(&s.admin_key, nul))
        .await
        .unwrap_err();
    assert_violation(&err, "api_key.display_name");
    let err = admin
        .list_audit_events(with_key(
            &s.admin_key,
            gw::ListAuditEventsRequest {
                principal: "apiKeys/\0".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_violation(&err, "principal");
    let err = admin
        .list_api_keys(with_key(
            &s.admin_key,
            gw::ListApiKeysRequest {
                tenant: "ac\0me".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_violation(&err, "tenant");
}

#[tokio::test]
async fn a_busy_machine_does_not_shed_a_lone_client() {
    let s = start_with(Options {
        tweak: Some(Arc::new(|c: &mut rapport_gateway::Config| {
            // The CPU gate on, as in production.
            c.backend_concurrency.max_scheduling_delay_ms = 10;
        })),
    })
    .await;
    let key = s.key("acme", &["profiles.read"]).await;
    // Threads that want every core, beside the gateway.
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs: Vec<_> = (0..cores * 2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    let mut p = s.profiles();
    let mut refused = Vec::new();
    for _ in 0..200 {
        if let Err(e) = p
            .list_customers(with_key(&key, pb::ListCustomersRequest::default()))
            .await
        {
            refused.push(e);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    assert!(
        refused.is_empty(),
        "one call at a time is never shed: {:?}",
        refused.iter().map(|e| e.code()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_doors_own_errors_carry_details() {
    let s = start().await;
    // The health service on an unknown name.
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    let err = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.get_error_details().error_info().is_some(),
        "ErrorInfo on NOT_FOUND"
    );

    // An oversized gRPC message: a violation naming the request as a whole.
    let key = s.key("acme", &["profiles.write"]).await;
    let err = s
        .profiles()
        .create_customer(with_key(
            &key,
            pb::CreateCustomerRequest {
                customer: Some(customer(&"x".repeat(5 * 1024 * 1024), "a@example.com")),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "REQUEST_TOO_LARGE");
    assert_eq!(
        rapport_testkit::status::violation_fields(&err),
        ["request"],
        "the message as a whole"
    );
}

mod abandoned {
    //! A write whose client goes away while the backend works on it.
    use rapport_proto::webhooks::{self as wh, webhooks_service_server as server};
    use tokio::sync::{Semaphore, mpsc};
    use tonic::{Request, Response, Status};

    use super::*;

    /// A webhooks backend whose create waits for the test's permit.
    pub(super) struct Gated {
        pub(super) gate: Arc<Semaphore>,
        pub(super) arrived: mpsc::UnboundedSender<()>,
    }

    fn no<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    #[tonic::async_trait]
    impl server::WebhooksService for Gated {
        async fn create_webhook_subscription(
            &self,
            _: Request<wh::CreateWebhookSubscriptionRequest>,
        ) -> Result<Response<wh::CreateWebhookSubscriptionResponse>, Status> {
            let _ = self.arrived.send(());
            let _permit = self.gate.acquire().await.expect("the gate stays open");
            Ok(Response::new(
                wh::CreateWebhookSubscriptionResponse::default(),
            ))
        }
        async fn get_webhook_subscription(
            &self,
            _: Request<wh::GetWebhookSubscriptionRequest>,
        ) -> Result<Response<wh::GetWebhookSubscriptionResponse>, Status> {
            no()
        }
        async fn list_dead_letters(
            &self,
            _: Request<wh::ListDeadLettersRequest>,
        ) -> Result<Response<wh::ListDeadLettersResponse>, Status> {
            no()
        }
        async fn replay_dead_letter(
            &self,
            _: Request<wh::ReplayDeadLetterRequest>,
        ) -> Result<Response<wh::ReplayDeadLetterResponse>, Status> {
            no()
        }
        async fn list_webhook_subscriptions(
            &self,
            _: Request<wh::ListWebhookSubscriptionsRequest>,
        ) -> Result<Response<wh::ListWebhookSubscriptionsResponse>, Status> {
            no()
        }
        async fn update_webhook_subscription(
            &self,
            _: Request<wh::UpdateWebhookSubscriptionRequest>,
        ) -> Result<Response<wh::UpdateWebhookSubscriptionResponse>, Status> {
            no()
        }
        async fn delete_webhook_subscription(
            &self,
            _: Request<wh::DeleteWebhookSubscriptionRequest>,
        ) -> Result<Response<wh::DeleteWebhookSubscriptionResponse>, Status> {
            no()
        }
        async fn list_webhook_deliveries(
            &self,
            _: Request<wh::ListWebhookDeliveriesRequest>,
        ) -> Result<Response<wh::ListWebhookDeliveriesResponse>, Status> {
            no()
        }
        async fn send_test_webhook(
            &self,
            _: Request<wh::SendTestWebhookRequest>,
        ) -> Result<Response<wh::SendTestWebhookResponse>, Status> {
            no()
        }
    }

    #[tokio::test]
    async fn a_write_whose_client_left_is_audited_with_the_backends_outcome() {
        const WEBHOOKS: &str = "rapport.webhooks.v1.WebhooksService";
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Arc::new(Semaphore::new(0));
        let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
        let backend = Gated {
            gate: gate.clone(),
            arrived: arrived_tx,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server::WebhooksServiceServer::new(backend))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        let s = start_with(Options {
            tweak: Some(Arc::new(move |c: &mut rapport_gateway::Config| {
                c.backends.insert(
                    WEBHOOKS.to_owned(),
                    rapport_gateway::backends::BackendConfig {
                        endpoints: vec![format!("http://{addr}")],
                        connections: 1,
                    },
                );
            })),
        })
        .await;
        let key = s.key("acme", &["webhooks.manage"]).await;
        let mut client = wh::webhooks_service_client::WebhooksServiceClient::new(s.channel.clone());
        let call = tokio::spawn(async move {
            client
                .create_webhook_subscription(with_key(
                    &key,
                    wh::CreateWebhookSubscriptionRequest::default(),
                ))
                .await
        });
        tokio::time::timeout(Duration::from_secs(10), arrived.recv())
            .await
            .expect("the create reaches the backend")
            .unwrap();
        // The client gives up; then the backend finishes the write.
        call.abort();
        let _ = call.await;
        gate.add_permits(1);

        let log = audit_log_until(&s, |log| {
            log.iter()
                .any(|e| e.method.ends_with("/CreateWebhookSubscription"))
        })
        .await;
        let record = log
            .iter()
            .find(|e| e.method.ends_with("/CreateWebhookSubscription"))
            .expect("the abandoned write is audited");
        assert_eq!(record.code, "OK", "the backend's outcome, not CANCELLED");
        drop(s);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}

/// A REST `GET /v1/customers` with `key`, over a connection from `source`.
async fn list_from(s: &Stack, source: std::net::IpAddr, key: &str) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
    let stream = socket.connect(s.gateway).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("http1 handshake");
    tokio::spawn(conn);
    let req = http::Request::get("/v1/customers")
        .header("host", s.gateway.to_string())
        .header("authorization", format!("Bearer {key}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    sender
        .send_request(req)
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test]
async fn one_client_flooding_guessed_keys_spends_only_its_own_lookup_budget() {
    let s = start_with(Options {
        tweak: Some(Arc::new(|c: &mut rapport_gateway::Config| {
            c.key_cache.unknown_lookups_per_second = 1_000;
            c.key_cache.unknown_lookups_per_peer_per_second = 5;
        })),
    })
    .await;
    // Keys created elsewhere (another replica): this gateway has never seen them.
    let elsewhere = rapport_gateway::auth::api_keys::ApiKeys::new(
        rapport_gateway::storage::Store::new(s.gateway_db.clone()),
    );
    let fresh = || issue(&elsewhere, "acme", &["profiles.read"], None, 0);
    let (first, second) = (fresh().await, fresh().await);

    // 127.0.0.1 floods guessed keys until its budget is spent.
    let mut p = s.profiles();
    let mut throttled = false;
    for _ in 0..1_000 {
        let err = p
            .list_customers(with_key(&random_key(), pb::ListCustomersRequest::default()))
            .await
            .unwrap_err();
        if rapport_testkit::status::reason(&err).as_deref() == Some("AUTH_THROTTLED") {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "the flooding client is throttled");
    let flooder: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(
        list_from(&s, flooder, &first).await,
        429,
        "the flooder's own new keys wait for its budget"
    );
    // Another client's first call with a key this gateway never saw works.
    assert_eq!(list_from(&s, other, &second).await, 200);
}
