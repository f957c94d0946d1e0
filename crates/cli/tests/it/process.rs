//! `rapport serve profiles` as a child process, as the crash and telemetry
//! tests run it.
use std::{net::SocketAddr, process::Stdio, time::Duration};

use rapport_testkit::TEST_SECRET;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

/// A running `rapport serve <service>`.
pub struct Serving {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where it serves `/metrics`, when asked to.
    pub metrics: Option<SocketAddr>,
}

/// Starts `rapport serve profiles` on 127.0.0.1:0 over the database `url`,
/// with `env` added to its environment (and no OTLP export unless `env`
/// asks for it), and waits for the address it logs; `None` when it exited
/// before serving.
pub async fn serve_profiles(url: &str, env: &[(&str, &str)]) -> Option<Serving> {
    serve("profiles", url, env).await
}

/// [`serve_profiles`] for any service of the table.
pub async fn serve(service: &str, url: &str, env: &[(&str, &str)]) -> Option<Serving> {
    let prefix = format!("RAPPORT_{}__", service.to_uppercase());
    let mut command = Command::new(env!("CARGO_BIN_EXE_rapport"));
    command
        .args(["serve", service])
        .env("RAPPORT_LOG__FORMAT", "json")
        .env("RUST_LOG", "info")
        .env(format!("{prefix}SERVER__LISTEN"), "127.0.0.1:0")
        .env(format!("{prefix}DATABASE__URL"), url)
        .env(format!("{prefix}PAGE_TOKEN_SECRET"), TEST_SECRET)
        .env(
            format!("{prefix}ASSERTION_PUBLIC_KEYS"),
            rapport_testkit::test_assertion_public_key(),
        )
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_SERVICE_NAME");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting rapport serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if log["message"] == "serving"
                && let Some(addr) = log["addr"].as_str()
            {
                // `Some(127.0.0.1:port)` or `None`, as Debug prints it.
                let metrics = log["metrics"]
                    .as_str()
                    .and_then(|m| m.strip_prefix("Some(")?.strip_suffix(')'))
                    .map(|m| m.parse::<SocketAddr>().unwrap());
                return Some((addr.parse::<SocketAddr>().unwrap(), metrics));
            }
        }
        None
    })
    .await
    .expect("rapport serve logs its address")?;
    let (addr, metrics) = addr;
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Serving {
        child,
        addr,
        metrics,
    })
}
