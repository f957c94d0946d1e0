//! The Connect protocol's unary calls on the gateway's port: the wire format
//! checked with a plain HTTP/1.1 client, and a real Connect client
//! (connect-python, from PyPI) when `RAPPORT_TEST_CONNECT_PYTHON` names a
//! Python that has it (`pip install connect-python protobuf`).

use rapport_e2e::*;

const CREATE: &str = "/rapport.profiles.v1.ProfilesService/CreateCustomer";
const GET: &str = "/rapport.profiles.v1.ProfilesService/GetCustomer";

#[tokio::test]
async fn connect_unary_calls_answer_messages_and_connect_errors() {
    let s = start().await;
    let key = s.key("acme", &["profiles.read", "profiles.write"]).await;
    let bearer = format!("Bearer {key}");
    let json = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
        ("connect-protocol-version", "1"),
    ];
    let created = http(
        s.gateway,
        "POST",
        CREATE,
        &json,
        r#"{"customer":{"displayName":"Ada","emails":[{"address":"ada@example.com"}]}}"#,
    )
    .await;
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert_eq!(created.headers["content-type"], "application/json");
    let name = created.json()["customer"]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // The same read in the binary codec: the bare message, no framing.
    use prost::Message as _;
    let request = rapport_proto::profiles::GetCustomerRequest { name: name.clone() };
    let got = http(
        s.gateway,
        "POST",
        GET,
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/proto"),
        ],
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["content-type"], "application/proto");
    let got = rapport_proto::profiles::GetCustomerResponse::decode(got.body).unwrap();
    assert_eq!(got.customer.unwrap().display_name, "Ada");

    // Errors: Connect's JSON error body, with the HTTP status its code has
    // and the status details.
    let missing = http(
        s.gateway,
        "POST",
        GET,
        &json,
        r#"{"name":"customers/00000000-0000-7000-8000-000000000000"}"#,
    )
    .await;
    assert_eq!(missing.status, 404);
    let error = missing.json();
    assert_eq!(error["code"], "not_found");
    assert!(
        error["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["type"] == "google.rpc.ErrorInfo" && d["value"].is_string()),
        "{error}"
    );
    let anonymous = http(
        s.gateway,
        "POST",
        GET,
        &[("content-type", "application/json")],
        format!(r#"{{"name":"{name}"}}"#),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["code"], "unauthenticated");

    // A REST route with a JSON body is still REST.
    let rest = http(
        s.gateway,
        "POST",
        "/v1/customers",
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ],
        r#"{"displayName":"Grace"}"#,
    )
    .await;
    assert_eq!(rest.status, 200, "{}", String::from_utf8_lossy(&rest.body));
    assert_eq!(rest.json()["customer"]["displayName"], "Grace");
}

#[tokio::test]
async fn a_real_connect_client_calls_through_the_gateway() {
    let Ok(python) = std::env::var("RAPPORT_TEST_CONNECT_PYTHON") else {
        eprintln!("RAPPORT_TEST_CONNECT_PYTHON unset: the connect-python client is not run");
        return;
    };
    let s = start().await;
    let key = s.key("acme", &["profiles.read", "profiles.write"]).await;
    let fds = std::env::temp_dir().join(format!("rapport-{}.fds", uuid::Uuid::now_v7()));
    std::fs::write(&fds, rapport_proto::FILE_DESCRIPTOR_SET).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/connect/client.py");
    let url = format!("http://{}", s.gateway);
    let fds_arg = fds.clone();
    // The client blocks; the gateway keeps serving on this test's runtime.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args([script, url.as_str(), key.as_str()])
            .arg(&fds_arg)
            .output()
            .expect("running the Connect client")
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&fds);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("ok"),
        "connect-python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
