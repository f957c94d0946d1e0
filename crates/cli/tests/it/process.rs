//! `rapport serve profiles` as a child process, as the crash and telemetry
//! tests run it.
use std::{net::SocketAddr, process::Stdio, time::Duration};

use rapport_testkit::TEST_SECRET;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

/// A running `rapport serve profiles`.
pub struct Serving {
    pub child: Child,
    pub addr: SocketAddr,
}

/// Starts `rapport serve profiles` on 127.0.0.1:0 over the database `url`,
/// with `env` added to its environment (and no OTLP export unless `env`
/// asks for it), and waits for the address it logs; `None` when it exited
/// before serving.
pub async fn serve_profiles(url: &str, env: &[(&str, &str)]) -> Option<Serving> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rapport"));
    command
        .args(["serve", "profiles"])
        .env("RAPPORT_LOG__FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("RAPPORT_PROFILES__SERVER__LISTEN", "127.0.0.1:0")
        .env("RAPPORT_PROFILES__DATABASE__URL", url)
        .env("RAPPORT_PROFILES__PAGE_TOKEN_SECRET", TEST_SECRET)
        .env(
            "RAPPORT_PROFILES__ASSERTION_PUBLIC_KEYS",
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
        .expect("starting rapport serve profiles");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if log["message"] == "serving"
                && let Some(addr) = log["addr"].as_str()
            {
                return Some(addr.parse::<SocketAddr>().unwrap());
            }
        }
        None
    })
    .await
    .expect("rapport serve profiles logs its address")?;
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Serving { child, addr })
}
