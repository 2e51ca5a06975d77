//! What every area's tests share: the service on a loopback port over either store, an
//! HTTP client with a deadline, the requests and assertions the tests make, and a reader of
//! the live log.

use std::time::Duration;

use es_postgres::PgEventStore;
use orders_service::{Backend, Config, Running, Service};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

pub(crate) const LOOPBACK: &str = "127.0.0.1:0";

/// A deadline for anything a test waits on.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .expect("an HTTP client")
}

pub(crate) async fn serve(backend: Backend, config: Config) -> Running {
    Service::start(backend, config)
        .await
        .expect("the service starts")
        .spawn(LOOPBACK.parse().expect("an address"))
        .await
        .expect("the service binds a loopback port")
}

/// What a test runs against: the service, and its PostgreSQL store if it has one (whose
/// schema is dropped once the test passed).
pub(crate) struct Fixture {
    pub(crate) running: Running,
    pub(crate) store: Option<PgEventStore>,
}

impl Fixture {
    pub(crate) async fn memory(config: Config) -> Self {
        Self {
            running: serve(Backend::memory(), config).await,
            store: None,
        }
    }

    pub(crate) async fn postgres(config: Config) -> Self {
        let store = es_testkit::postgres::fresh_store().await;
        Self {
            running: serve(Backend::Postgres(store.clone()), config).await,
            store: Some(store),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    pub(crate) async fn finish(self) {
        tokio::time::timeout(PATIENCE, self.running.stop())
            .await
            .expect("the service shuts down in time")
            .expect("the service served without failing");
        if let Some(store) = self.store {
            es_testkit::postgres::drop_schema(store).await;
        }
    }
}

/// One test on both stores: `on_both_stores!(name, config)` runs the async fn `name` of
/// the module it is in on a fixture of each store, made with `config`.
macro_rules! on_both_stores {
    ($name:ident, $config:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let fixture = $crate::support::Fixture::memory($config).await;
                super::$name(&fixture).await;
                fixture.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let fixture = $crate::support::Fixture::postgres($config).await;
                super::$name(&fixture).await;
                fixture.finish().await;
            }
        }
    };
}
pub(crate) use on_both_stores;

pub(crate) async fn post(fixture: &Fixture, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(fixture.url(path))
        .json(&body)
        .send()
        .await
        .expect("the request is answered")
}

pub(crate) async fn get(fixture: &Fixture, path: &str) -> reqwest::Response {
    client()
        .get(fixture.url(path))
        .send()
        .await
        .expect("the request is answered")
}

/// The response's status and JSON body.
pub(crate) async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json::<Value>().await.expect("a JSON body");
    (status, body)
}

/// Asserts an error response: its status and its `{"error", "message"}` body.
pub(crate) async fn assert_error(
    response: reqwest::Response,
    status: StatusCode,
    kind: &str,
) -> String {
    let (got, body) = json_of(response).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"], kind, "{body}");
    let message = body["message"].as_str().expect("a message").to_owned();
    assert!(!message.is_empty());
    message
}

pub(crate) fn placement(total_cents: i64) -> Value {
    json!({
        "customer": "ada",
        "items": [{ "sku": "kettle", "quantity": 1, "unit_price_cents": total_cents }],
    })
}

pub(crate) async fn place(fixture: &Fixture, id: &str, total_cents: i64) -> Value {
    let (status, body) = json_of(
        post(
            fixture,
            &format!("/orders/{id}/place"),
            placement(total_cents),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

pub(crate) fn order_id() -> String {
    format!("o-{}", Uuid::now_v7().simple())
}

/// The events of the live log a client has read: `(id, event type, data)`.
pub(crate) struct SseReader {
    pub(crate) response: reqwest::Response,
    pub(crate) buffer: String,
}

impl SseReader {
    pub(crate) async fn open(fixture: &Fixture, last_event_id: Option<&str>) -> Self {
        // No overall timeout: the stream is meant to stay open; each read has one.
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a client");
        let mut request = client.get(fixture.url("/events"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = tokio::time::timeout(PATIENCE, request.send())
            .await
            .expect("the stream opens in time")
            .expect("the stream opens");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an SSE stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (not a keep-alive comment), or `None` when the stream ended.
    pub(crate) async fn next(&mut self) -> Option<(String, String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        id = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("event:") {
                        kind = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).expect("JSON data");
                return Some((id, kind, data));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("an event in time")
                .expect("the stream reads");
            self.buffer
                .push_str(std::str::from_utf8(&chunk?).expect("UTF-8"));
        }
    }

    /// The next event of order `id`, skipping others.
    pub(crate) async fn next_of(&mut self, id: &str) -> (String, String, Value) {
        loop {
            let event = self.next().await.expect("the stream goes on");
            if event.2["order_id"] == id {
                return event;
            }
        }
    }
}
