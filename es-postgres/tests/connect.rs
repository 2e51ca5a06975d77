//! A failed connection says where it tried to connect, and neither its message nor the
//! sqlx error under it (`Display`, `Debug`, the whole source chain) shows the password,
//! whatever form the connection string gives it in.

mod common;

use std::error::Error;

use es_postgres::{PgEventStore, PgStoreError};

/// The password every connection string below holds, in some form.
const PASSWORD: &str = "hunter2";

/// Every `Display` and `Debug` along the error's source chain.
fn rendered(error: &(dyn Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(error);
    while let Some(error) = next {
        out.push_str(&format!("{error}\n{error:?}\n"));
        next = error.source();
    }
    out
}

/// Connects to `url`, which must fail, and checks that the error shows no part of the
/// password and describes the target as `shown`.
async fn assert_connect_fails_quietly(url: &str, shown: &str) {
    let error = match PgEventStore::connect(url).await {
        Ok(_) => panic!("connecting to {url} succeeded"),
        Err(error) => error,
    };
    let PgStoreError::Connect { url: described, .. } = &error else {
        panic!("expected a connection error for {url}, got {error:?}");
    };
    assert!(
        described.contains(shown),
        "{url} is described as {described}"
    );
    let all = rendered(&error);
    for part in [PASSWORD, "hunter", "ter2", "hun%40ter2"] {
        assert!(!all.contains(part), "{url} shows `{part}`:\n{all}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_reported_without_the_password() {
    // Nothing listens on port 1: each attempt is refused at once.
    let cases = [
        (
            "postgres://app:hunter2@127.0.0.1:1/x",
            "postgres://app@127.0.0.1:1/x",
        ),
        (
            "postgres://app:hun@ter2@127.0.0.1:1/x",
            "postgres://app@127.0.0.1:1/x",
        ),
        (
            "postgres://app:hun%40ter2@127.0.0.1:1/x",
            "postgres://app@127.0.0.1:1/x",
        ),
        (
            "postgres://app@127.0.0.1:1/x?password=hunter2",
            "postgres://app@127.0.0.1:1/x",
        ),
        (
            "postgres://app@127.0.0.1:1/x?user=other&password=hunter2",
            "postgres://other@127.0.0.1:1/x",
        ),
        (
            "postgres://app@127.0.0.1:1/x?sslmode=disable&application_name=hunter2",
            "postgres://app@127.0.0.1:1/x",
        ),
        (
            "postgres://app@127.0.0.1:1/hunter2@x",
            "not shown: percent-encode",
        ),
        (
            "postgres://app:hunter2@127.0.0.1:port/x",
            "a postgres:// URL that does not parse",
        ),
        (
            "host=127.0.0.1 port=1 user=app password=hunter2",
            "host=127.0.0.1 port=1 user=app",
        ),
        ("host=127.0.0.1 password='hun ter2", "not a postgres:// URL"),
    ];
    for (url, shown) in cases {
        assert_connect_fails_quietly(url, shown).await;
    }
}

#[tokio::test]
async fn a_refusing_server_is_reported_without_the_password() {
    // The test server trusts local connections, so a wrong password cannot be refused;
    // a database that does not exist is refused after the password went over the wire.
    let url = common::database_url()
        .parse::<sqlx::postgres::PgConnectOptions>()
        .expect("DATABASE_URL is a postgres:// URL");
    let (host, port, user) = (url.get_host(), url.get_port(), url.get_username());
    let target = format!("{host}:{port}/es_no_such_database");
    assert_connect_fails_quietly(
        &format!("postgres://{user}:hunter2@{target}"),
        &format!("postgres://{user}@{target}"),
    )
    .await;
    assert_connect_fails_quietly(
        &format!("postgres://{user}@{target}?password=hunter2"),
        &format!("postgres://{user}@{target}"),
    )
    .await;
}

/// A parameter sqlx does not read (a mistyped `pasword=`) is dropped before sqlx sees the
/// URL, so its value reaches no log: sqlx logs the value of every parameter it ignores.
#[tokio::test]
async fn ignored_parameters_reach_no_log() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let url = format!("postgres://app@127.0.0.1:1/x?pasword={PASSWORD}&sslpassword={PASSWORD}");
    let _ = PgEventStore::connect(&url).await;
    let log = String::from_utf8(captured.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .unwrap_or_default();
    assert!(
        log.contains("pasword"),
        "the ignored parameter is named: {log}"
    );
    assert!(
        !log.contains(PASSWORD),
        "its value stays out of the log: {log}"
    );
}
