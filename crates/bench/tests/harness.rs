//! The harness itself works: a tiny run of the engine against the echo server
//! in this process on `127.0.0.1:0`, closed and open loop. Nothing here
//! asserts a time; a benchmark reports numbers, a test checks the instrument.
use std::time::Duration;

use rapport_bench::{
    BenchReport, LoadConfig, RunInfo, ScenarioReport, Target, Watched,
    workload::{Credentials, Echo},
};

struct EchoServer {
    uri: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn echo_server() -> EchoServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(rapport_bench::echo::serve(listener, async {
        let _ = stopped.await;
    }));
    EchoServer {
        uri,
        stop: Some(stop),
        task,
    }
}

impl EchoServer {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn tiny(rate: Option<f64>) -> LoadConfig {
    LoadConfig {
        duration: Duration::from_millis(200),
        warmup: Duration::from_millis(50),
        concurrency: 2,
        connections: 1,
        rate,
        call_timeout: Duration::from_secs(5),
    }
}

fn info() -> RunInfo {
    RunInfo {
        rapport_version: env!("CARGO_PKG_VERSION").into(),
        started_unix: 0,
        database: "none".into(),
        customers: 0,
        customers_source: "api".into(),
        sample: 0,
        warmup_secs: 0.05,
        duration_secs: 0.2,
        concurrency: 2,
        connections: 1,
        rate: None,
        client_threads: 1,
        payload_bytes: 300,
        pinning: "none".into(),
        cpus: 1,
        clock_ticks_per_second: rapport_bench::procfs::clock_ticks_per_second(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_run_against_echo_reports_sane_numbers() {
    let server = echo_server().await;
    let target = Target {
        uri: server.uri.clone(),
    };
    // The "server" is this very process: its /proc readings must work.
    let watched = vec![Watched {
        role: "echo".into(),
        pids: vec![std::process::id()],
    }];
    let mut scenarios = Vec::new();
    for (name, rate) in [("echo", None), ("echo-open", Some(500.0))] {
        let stats = rapport_bench::engine::run(
            &target,
            &Echo::new(300, Credentials::None),
            &tiny(rate),
            &watched,
        )
        .await
        .unwrap();
        assert!(stats.requests > 0, "{name}: {stats:?}");
        assert_eq!(stats.ok, stats.requests, "{name}: {stats:?}");
        assert!(stats.errors.is_empty(), "{name}: {stats:?}");
        let l = stats.latency_us;
        assert!(
            0.0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
            "{name}: {l:?}"
        );
        if cfg!(target_os = "linux") {
            let echo = &stats.servers[0];
            assert!(echo.cpu_percent.is_some(), "{name}: {echo:?}");
            assert!(echo.peak_rss_kib.is_some_and(|k| k > 0), "{name}: {echo:?}");
            assert!(stats.other_cpu_percent.is_some(), "{name}: {stats:?}");
        }
        scenarios.push(ScenarioReport {
            scenario: name.into(),
            path: "direct".into(),
            ceiling: (name != "echo").then(|| "echo".into()),
            direct: None,
            baseline: None,
            stats,
        });
    }
    server.stop().await;

    let report = BenchReport {
        run: info(),
        scenarios,
        ceilings: vec![],
    };
    let back: BenchReport = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report, "the JSON round-trips");
    let table = report.render_table();
    assert!(
        table.lines().any(|l| l.starts_with("echo-open ")),
        "{table}"
    );
    assert!(report.render_compare().contains("1.00×") || report.render_compare().contains('×'));
}

#[tokio::test]
async fn an_isolated_run_uses_its_own_runtime() {
    let server = echo_server().await;
    let stats = rapport_bench::engine::run_isolated(
        1,
        Target {
            uri: server.uri.clone(),
        },
        Echo::new(64, Credentials::None),
        tiny(None),
        vec![],
    )
    .await
    .unwrap();
    assert!(stats.ok > 0 && stats.errors.is_empty(), "{stats:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_dead_target_fails_to_connect_rather_than_reporting_zeros() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = rapport_bench::engine::run(
        &Target {
            uri: format!("http://{addr}"),
        },
        &Echo::new(8, Credentials::None),
        &tiny(None),
        &[],
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("connecting"), "{err:#}");
}
