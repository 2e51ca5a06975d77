//! The service end to end, over real HTTP on a loopback port, on the in-memory store and
//! on PostgreSQL (a schema of its own per test, from `es_testkit::postgres`; the tests fail
//! without a server).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step is a failed test"
)]

use std::net::SocketAddr;
use std::time::Duration;

use es_core::{Backoff, RetryPolicy};
use es_postgres::PgEventStore;
use orders_service::server::ROUTES;
use orders_service::{Backend, Config, Running, Service};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use uuid::Uuid;

const LOOPBACK: &str = "127.0.0.1:0";

/// A deadline for anything a test waits on.
const PATIENCE: Duration = Duration::from_secs(20);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .expect("an HTTP client")
}

async fn serve(backend: Backend, config: Config) -> Running {
    Service::start(backend, config)
        .await
        .expect("the service starts")
        .spawn(LOOPBACK.parse().expect("an address"))
        .await
        .expect("the service binds a loopback port")
}

/// What a test runs against: the service, and its PostgreSQL store if it has one (whose
/// schema is dropped once the test passed).
struct Fixture {
    running: Running,
    store: Option<PgEventStore>,
}

impl Fixture {
    async fn memory(config: Config) -> Self {
        Self {
            running: serve(Backend::memory(), config).await,
            store: None,
        }
    }

    async fn postgres(config: Config) -> Self {
        let store = es_testkit::postgres::fresh_store().await;
        Self {
            running: serve(Backend::Postgres(store.clone()), config).await,
            store: Some(store),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    async fn finish(self) {
        tokio::time::timeout(PATIENCE, self.running.stop())
            .await
            .expect("the service shuts down in time")
            .expect("the service served without failing");
        if let Some(store) = self.store {
            es_testkit::postgres::drop_schema(store).await;
        }
    }
}

/// One test on both stores.
macro_rules! on_both_stores {
    ($name:ident, $config:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let fixture = super::Fixture::memory($config).await;
                super::$name(&fixture).await;
                fixture.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let fixture = super::Fixture::postgres($config).await;
                super::$name(&fixture).await;
                fixture.finish().await;
            }
        }
    };
}

async fn post(fixture: &Fixture, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(fixture.url(path))
        .json(&body)
        .send()
        .await
        .expect("the request is answered")
}

async fn get(fixture: &Fixture, path: &str) -> reqwest::Response {
    client()
        .get(fixture.url(path))
        .send()
        .await
        .expect("the request is answered")
}

/// The response's status and JSON body.
async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json::<Value>().await.expect("a JSON body");
    (status, body)
}

/// Asserts an error response: its status and its `{"error", "message"}` body.
async fn assert_error(response: reqwest::Response, status: StatusCode, kind: &str) -> String {
    let (got, body) = json_of(response).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"], kind, "{body}");
    let message = body["message"].as_str().expect("a message").to_owned();
    assert!(!message.is_empty());
    message
}

fn placement(total_cents: i64) -> Value {
    json!({
        "customer": "ada",
        "items": [{ "sku": "kettle", "quantity": 1, "unit_price_cents": total_cents }],
    })
}

async fn place(fixture: &Fixture, id: &str, total_cents: i64) -> Value {
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

fn order_id() -> String {
    format!("o-{}", Uuid::now_v7().simple())
}

on_both_stores!(place_pay_prepare_ship, orders_service::Config::default());

async fn place_pay_prepare_ship(fixture: &Fixture) {
    let id = order_id();
    let placed = place(fixture, &id, 2_500).await;
    assert_eq!(placed["version"], 1);
    assert_eq!(placed["events"], json!(["OrderNew"]));
    assert!(placed["position"].is_string(), "{placed}");

    for (path, body, event) in [
        (
            "pay",
            json!({ "amount_cents": 1_000, "reference": "p-1" }),
            "OrderPaymentReceived",
        ),
        (
            "pay",
            json!({ "amount_cents": 1_500, "reference": "p-2" }),
            "OrderPaymentReceived",
        ),
        ("prepare", json!({ "warehouse": "north" }), "OrderPreparing"),
        (
            "ship",
            json!({ "carrier": "dhl", "tracking_number": "T-1" }),
            "OrderShipped",
        ),
    ] {
        let (status, body) =
            json_of(post(fixture, &format!("/orders/{id}/{path}"), body).await).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["events"], json!([event]));
    }

    let (status, order) = json_of(get(fixture, &format!("/orders/{id}")).await).await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["status"], "shipped");
    assert_eq!(order["version"], 5);
    assert_eq!(order["paid_cents"], 2_500);
    assert_eq!(order["due_cents"], 0);
    assert_eq!(order["warehouse"], "north");
    assert_eq!(
        order["shipment"],
        json!({ "carrier": "dhl", "tracking_number": "T-1" })
    );

    // The history, as stored.
    let (status, history) = json_of(get(fixture, &format!("/orders/{id}/history")).await).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let types: Vec<&str> = history
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["event_type"].as_str().expect("a type"))
        .collect();
    assert_eq!(
        types,
        [
            "OrderNew",
            "OrderPaymentReceived",
            "OrderPaymentReceived",
            "OrderPreparing",
            "OrderShipped"
        ]
    );
    assert_eq!(history[1]["payload"]["amount_cents"], 1_000);
    assert_eq!(history[0]["order_id"], id.as_str());

    // As of a version: after the first payment.
    let (status, then) =
        json_of(get(fixture, &format!("/orders/{id}/as-of?version=2")).await).await;
    assert_eq!(status, StatusCode::OK, "{then}");
    assert_eq!(
        (
            then["status"].clone(),
            then["paid_cents"].clone(),
            then["version"].clone()
        ),
        (json!("placed"), json!(1_000), json!(2))
    );
    // As of the time the order was placed: only its first event.
    let placed_at = history[0]["recorded_at"].as_str().expect("a time");
    let (status, then) = json_of(
        client()
            .get(fixture.url(&format!("/orders/{id}/as-of")))
            .query(&[("time", placed_at)])
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{then}");
    assert_eq!(then["version"], 1);
    assert_eq!(then["paid_cents"], 0);
    // Before it was placed, there was no order.
    assert_error(
        get(fixture, &format!("/orders/{id}/as-of?version=0")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // The same idempotency key twice records the command once.
    let key = Uuid::now_v7().to_string();
    let other = order_id();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = client()
            .post(fixture.url(&format!("/orders/{other}/place")))
            .header("idempotency-key", &key)
            .json(&placement(100))
            .send()
            .await
            .expect("answered");
        answers.push(json_of(response).await);
    }
    assert_eq!(answers[0].0, StatusCode::OK);
    assert_eq!(answers[1].0, StatusCode::OK, "{}", answers[1].1);
    assert_eq!(answers[0].1["duplicate"], false);
    assert_eq!(answers[1].1["duplicate"], true);
    assert_eq!(answers[1].1["position"], answers[0].1["position"]);
}

on_both_stores!(
    errors_have_their_statuses,
    orders_service::Config::default()
);

async fn errors_have_their_statuses(fixture: &Fixture) {
    let id = order_id();
    // 404: an order never placed, read or commanded.
    assert_error(
        get(fixture, &format!("/orders/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        get(fixture, &format!("/orders/{id}/history")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let message = assert_error(
        post(
            fixture,
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": 1, "reference": "r" }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(message.contains(&id), "{message}");

    // 422: the order's rules say no.
    place(fixture, &id, 1_000).await;
    let message = assert_error(
        post(
            fixture,
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": 5_000, "reference": "r" }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected",
    )
    .await;
    assert!(message.contains("exceeds"), "{message}");
    assert_error(
        post(fixture, &format!("/orders/{id}/place"), placement(10)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected",
    )
    .await;
    assert_error(
        post(
            fixture,
            &format!("/orders/{id}/ship"),
            json!({ "carrier": "dhl", "tracking_number": "T" }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected",
    )
    .await;

    // 400: malformed JSON, a missing field, a wrong type, an unknown field.
    let malformed = client()
        .post(fixture.url(&format!("/orders/{id}/pay")))
        .header("content-type", "application/json")
        .body("{\"amount_cents\": ")
        .send()
        .await
        .expect("answered");
    assert_error(malformed, StatusCode::BAD_REQUEST, "bad_request").await;
    for body in [
        json!({ "amount_cents": 5 }),
        json!({ "amount_cents": "five", "reference": "r" }),
        json!({ "amount_cents": 5, "reference": "r", "extra": true }),
    ] {
        assert_error(
            post(fixture, &format!("/orders/{id}/pay"), body).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    let not_json = client()
        .post(fixture.url(&format!("/orders/{id}/pay")))
        .header("content-type", "text/plain")
        .body("pay me")
        .send()
        .await
        .expect("answered");
    assert_error(not_json, StatusCode::BAD_REQUEST, "bad_request").await;
    // ... a bad header, query or position.
    let bad_correlation = client()
        .get(fixture.url(&format!("/orders/{id}")))
        .header("x-correlation-id", "not-a-uuid")
        .send()
        .await
        .expect("answered");
    assert_error(bad_correlation, StatusCode::BAD_REQUEST, "bad_request").await;
    let bad_key = client()
        .post(fixture.url(&format!("/orders/{id}/pay")))
        .header("idempotency-key", "seven")
        .json(&json!({ "amount_cents": 1, "reference": "r" }))
        .send()
        .await
        .expect("answered");
    assert_error(bad_key, StatusCode::BAD_REQUEST, "bad_request").await;
    for path in [
        format!("/orders/{id}/as-of"),
        format!("/orders/{id}/as-of?version=1&time=2026-01-01T00:00:00Z"),
        format!("/orders/{id}/as-of?version=minus-one"),
        "/orders?status=lost".to_owned(),
        "/orders?after=yesterday".to_owned(),
        "/events?after=3".to_owned(),
    ] {
        assert_error(
            get(fixture, &path).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    // An id that makes no stream id.
    let long = "x".repeat(300);
    assert_error(
        get(fixture, &format!("/orders/{long}")).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
}

/// Commands that never retry a conflict, so that concurrent ones on one order conflict.
fn never_retry() -> Config {
    Config {
        retry: RetryPolicy::never(),
        ..Config::default()
    }
}

on_both_stores!(conflicts_are_409, super::never_retry());

async fn conflicts_are_409(fixture: &Fixture) {
    let id = order_id();
    place(fixture, &id, 1_000_000).await;
    let mut conflict = None;
    // Rounds of concurrent payments on one order, until one loses the race (bounded: the
    // test fails if none ever does).
    for _ in 0..50 {
        let mut payments = JoinSet::new();
        for n in 0..16 {
            let url = fixture.url(&format!("/orders/{id}/pay"));
            payments.spawn(async move {
                let response = client()
                    .post(url)
                    .json(&json!({ "amount_cents": 1, "reference": format!("r{n}") }))
                    .send()
                    .await
                    .expect("answered");
                json_of(response).await
            });
        }
        while let Some(answer) = payments.join_next().await {
            let (status, body) = answer.expect("the request task");
            assert!(
                status == StatusCode::OK || status == StatusCode::CONFLICT,
                "{status}: {body}"
            );
            if status == StatusCode::CONFLICT {
                conflict = Some(body);
            }
        }
        if conflict.is_some() {
            break;
        }
    }
    let body = conflict.expect("a concurrent payment lost the race");
    assert_eq!(body["error"], "conflict");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("kept changing")),
        "{body}"
    );
}

/// Reads of your writes wait a moment only, so that the stale case answers soon.
fn short_read_wait() -> Config {
    Config {
        read_wait: Duration::from_millis(300),
        ..Config::default()
    }
}

on_both_stores!(read_model_reads_your_writes, super::short_read_wait());

async fn read_model_reads_your_writes(fixture: &Fixture) {
    let id = order_id();
    let placed = place(fixture, &id, 700).await;
    let position = placed["position"].as_str().expect("a position").to_owned();

    let list = |status: &'static str, after: String| {
        let url = fixture.url("/orders");
        async move {
            let response = client()
                .get(url)
                .query(&[("status", status), ("after", &after)])
                .send()
                .await
                .expect("answered");
            json_of(response).await
        }
    };
    // Straight after the write, with its position: the read model includes it.
    let (status, body) = list("placed", position.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["orders"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| o["order_id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert_eq!(body["orders"][0]["customer"], "ada");
    assert_eq!(body["orders"][0]["total_cents"], 700);
    assert!(body["checkpoint"].is_string(), "{body}");

    let (status, paid) = json_of(
        post(
            fixture,
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": 700, "reference": "r" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    let position = paid["position"].as_str().expect("a position").to_owned();
    let (status, body) = list("paid", position.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["orders"][0]["order_id"], id.as_str());
    assert_eq!(body["orders"][0]["paid_cents"], 700);
    assert_eq!(body["orders"][0]["version"], 2);
    let (_, placed_now) = list("placed", position).await;
    assert_eq!(placed_now["orders"], json!([]), "no longer placed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_model_behind_is_stale() {
    use es_core::LeaseStore as _;

    // Another instance of the service holds the read model's lease: this one's runner
    // stands by, and its read model does not reach a new write.
    let store = es_testkit::postgres::fresh_store().await;
    let other = Uuid::now_v7();
    let held = store
        .acquire_lease(
            orders_service::read_model::NAME,
            other,
            Duration::from_secs(600),
        )
        .await
        .expect("the lease");
    assert!(held);
    let fixture = Fixture {
        running: serve(Backend::Postgres(store.clone()), short_read_wait()).await,
        store: Some(store.clone()),
    };
    let placed = place(&fixture, &order_id(), 700).await;
    let position = placed["position"].as_str().expect("a position");
    let message = assert_error(
        get(&fixture, &format!("/orders?after={position}")).await,
        StatusCode::GATEWAY_TIMEOUT,
        "stale",
    )
    .await;
    assert!(message.contains(position), "{message}");
    // Without `after`, the read model answers at once, as far as it got.
    let (status, body) = json_of(get(&fixture, "/orders").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["orders"], json!([]));
    store
        .release_lease(orders_service::read_model::NAME, other)
        .await
        .expect("released");
    fixture.finish().await;
}

/// The events of the live log a client has read: `(id, event type, data)`.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(fixture: &Fixture, last_event_id: Option<&str>) -> Self {
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
    async fn next(&mut self) -> Option<(String, String, Value)> {
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
    async fn next_of(&mut self, id: &str) -> (String, String, Value) {
        loop {
            let event = self.next().await.expect("the stream goes on");
            if event.2["order_id"] == id {
                return event;
            }
        }
    }
}

on_both_stores!(live_log_over_sse, orders_service::Config::default());

async fn live_log_over_sse(fixture: &Fixture) {
    // Subscribed first; the event is appended after.
    let mut live = SseReader::open(fixture, None).await;
    let id = order_id();
    place(fixture, &id, 300).await;
    let (event_id, kind, data) = live.next_of(&id).await;
    assert_eq!(kind, "OrderNew");
    assert_eq!(
        data["position"],
        event_id.as_str(),
        "the SSE id is the position"
    );
    assert_eq!(data["version"], 1);
    assert_eq!(data["payload"]["customer"], "ada");

    // Resuming after that event delivers what came after it, not it again.
    post(
        fixture,
        &format!("/orders/{id}/pay"),
        json!({ "amount_cents": 100, "reference": "r" }),
    )
    .await;
    let mut resumed = SseReader::open(fixture, Some(&event_id)).await;
    let (_, kind, data) = resumed.next_of(&id).await;
    assert_eq!(kind, "OrderPaymentReceived");
    assert_eq!(data["version"], 2);
}

on_both_stores!(
    correlation_ids_round_trip,
    orders_service::Config::default()
);

async fn correlation_ids_round_trip(fixture: &Fixture) {
    let id = order_id();
    let correlation = Uuid::now_v7();
    let response = client()
        .post(fixture.url(&format!("/orders/{id}/place")))
        .header("x-correlation-id", correlation.to_string())
        .json(&placement(100))
        .send()
        .await
        .expect("answered");
    assert_eq!(
        response.headers()["x-correlation-id"],
        correlation.to_string().as_str()
    );
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["correlation_id"], correlation.to_string());
    let (_, history) = json_of(get(fixture, &format!("/orders/{id}/history")).await).await;
    assert_eq!(history[0]["correlation_id"], correlation.to_string());

    // Without the header: a new UUID v7, in the events and the response alike.
    let response = post(
        fixture,
        &format!("/orders/{id}/pay"),
        json!({ "amount_cents": 10, "reference": "r" }),
    )
    .await;
    let given: Uuid = response.headers()["x-correlation-id"]
        .to_str()
        .expect("text")
        .parse()
        .expect("a UUID");
    assert_eq!(given.get_version_num(), 7);
    let (_, history) = json_of(get(fixture, &format!("/orders/{id}/history")).await).await;
    assert_eq!(history[1]["correlation_id"], given.to_string());
    // Errors carry it too.
    let response = get(fixture, "/orders/nobody").await;
    assert!(response.headers().contains_key("x-correlation-id"));
}

on_both_stores!(
    openapi_describes_every_route,
    orders_service::Config::default()
);

async fn openapi_describes_every_route(fixture: &Fixture) {
    let (status, doc) = json_of(get(fixture, "/openapi.json").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let mut routes: Vec<(&str, &str)> = ROUTES.to_vec();
    if cfg!(feature = "prometheus") {
        routes.push(("get", "/metrics"));
    }
    for (method, path) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[cfg(feature = "prometheus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests() {
    let fixture = Fixture::memory(Config::default()).await;
    get(&fixture, "/orders").await;
    let text = get(&fixture, "/metrics")
        .await
        .text()
        .await
        .expect("a body");
    assert!(
        text.lines().any(
            |line| line.starts_with("orders_service_http_requests_total")
                && line.contains("route=\"/orders\"")
                && line.contains("status=\"200\"")
        ),
        "{text}"
    );
    fixture.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_live_streams() {
    let fixture = Fixture::memory(Config::default()).await;
    let mut live = SseReader::open(&fixture, None).await;
    let id = order_id();
    place(&fixture, &id, 100).await;
    live.next_of(&id).await;
    // Graceful shutdown finishes although a client keeps a stream open: the stream ends.
    fixture.finish().await;
    assert!(live.next().await.is_none(), "the stream ended");
}

/// A TCP proxy to `target` on a loopback port; aborting its tasks cuts every connection
/// and refuses new ones.
async fn proxy(target: SocketAddr) -> (SocketAddr, JoinSet<()>) {
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_unavailable_is_503() {
    let store = es_testkit::postgres::fresh_store().await;
    let options = es_testkit::postgres::connect_options("orders-service-503");
    let target: SocketAddr = format!("{}:{}", options.get_host(), options.get_port())
        .parse()
        .expect("the test server is at an IP address");
    let (addr, mut proxied) = proxy(target).await;
    let _budget = es_testkit::postgres::hold_connections(5).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options.host("127.0.0.1").port(addr.port()));
    let cut_off = PgEventStore::builder(pool)
        .schema(store.schema().as_str())
        .expect("the schema")
        .reply_timeout(Some(Duration::from_secs(2)))
        .build();
    let config = Config {
        retry: RetryPolicy::default().with_store_retries(0, Backoff::none()),
        ..Config::default()
    };
    let fixture = Fixture {
        running: serve(Backend::Postgres(cut_off), config).await,
        store: None,
    };
    let id = order_id();
    place(&fixture, &id, 100).await;

    proxied.shutdown().await;
    assert_error(
        get(&fixture, &format!("/orders/{id}")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    assert_error(
        post(
            &fixture,
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": 100, "reference": "r" }),
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    fixture.finish().await;
    es_testkit::postgres::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_model_survives_a_restart() {
    let fixture = Fixture::postgres(Config::default()).await;
    let store = fixture.store.clone().expect("a PostgreSQL store");
    let id = order_id();
    place(&fixture, &id, 900).await;
    let (_, paid) = json_of(
        post(
            &fixture,
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": 400, "reference": "r" }),
        )
        .await,
    )
    .await;
    let position = paid["position"].as_str().expect("a position").to_owned();
    let (status, _) = json_of(get(&fixture, &format!("/orders?after={position}")).await).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::timeout(PATIENCE, fixture.running.stop())
        .await
        .expect("stops in time")
        .expect("served");

    // A new process on the same database: the read model resumes from its stored
    // checkpoint, and applies nothing twice.
    let again = Fixture {
        running: serve(Backend::Postgres(store.clone()), Config::default()).await,
        store: Some(store),
    };
    let (_, paid) = json_of(
        post(
            &again,
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": 500, "reference": "r2" }),
        )
        .await,
    )
    .await;
    let position = paid["position"].as_str().expect("a position").to_owned();
    let (status, body) =
        json_of(get(&again, &format!("/orders?status=paid&after={position}")).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let orders = body["orders"].as_array().expect("a list");
    assert_eq!(orders.len(), 1, "{body}");
    assert_eq!(orders[0]["paid_cents"], 900, "each payment counted once");
    assert_eq!(orders[0]["version"], 3);
    again.finish().await;
}

/// The versions of the read model's migrations `store`'s schema recorded, in order.
async fn read_model_migrations(store: &PgEventStore) -> Vec<i32> {
    let recorded = store
        .table("es_read_model_migrations")
        .expect("a table name")
        .sql("SELECT version FROM {table} WHERE read_model = $1 ORDER BY version");
    sqlx::query_scalar(recorded)
        .bind(orders_service::read_model::NAME)
        .fetch_all(store.pool())
        .await
        .expect("the recorded migrations")
}

/// Lists `/orders` on `fixture` until `id` is in it, up to [`PATIENCE`]: whichever
/// instance holds the read model's lease writes the table they all read.
async fn until_listed(fixture: &Fixture, id: &str) -> Value {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let (status, body) = json_of(get(fixture, "/orders").await).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let listed = body["orders"]
                .as_array()
                .expect("a list")
                .iter()
                .any(|order| order["order_id"] == id);
            if listed {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the order reaches the read model in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_share_one_table() {
    // Three processes of the service on one schema, started at once: each migrates the
    // read model's table at start, and they take turns, so none fails on another's
    // half-made table and the table is made once. (Pools sized to fit the test's share.)
    let store = es_testkit::postgres::fresh_store_sized(6, |builder| builder).await;
    let second = es_testkit::postgres::second_store(&store, "orders-service-b", |b| b).await;
    let third = es_testkit::postgres::second_store(&store, "orders-service-c", |b| b).await;
    let (first, second, third) = tokio::join!(
        serve(Backend::Postgres(store.clone()), Config::default()),
        serve(Backend::Postgres(second), Config::default()),
        serve(Backend::Postgres(third), Config::default()),
    );
    let instances = [first, second, third].map(|running| Fixture {
        running,
        store: None,
    });
    assert_eq!(read_model_migrations(&store).await, vec![1], "made once");
    for instance in &instances {
        let (status, body) = json_of(get(instance, "/orders").await).await;
        assert_eq!(status, StatusCode::OK, "the table is there: {body}");
    }

    let id = order_id();
    place(&instances[1], &id, 300).await;
    for instance in &instances {
        until_listed(instance, &id).await;
    }
    for instance in instances {
        instance.finish().await;
    }
    es_testkit::postgres::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_made_before_it_was_declared_is_kept() {
    // A schema from a release that made the table by hand at start, recording nothing:
    // the first migration adopts the table, rows and all.
    let store = es_testkit::postgres::fresh_store().await;
    let table = store
        .table(orders_service::read_model::TABLE)
        .expect("a table name");
    sqlx::raw_sql(table.sql(include_str!("../src/sql/create_orders_by_status.sql")))
        .execute(store.pool())
        .await
        .expect("the table as the earlier release made it");
    sqlx::query(table.sql(
        "INSERT INTO {table} (order_id, customer, status, total_cents, paid_cents, version)
         VALUES ('o-earlier', 'ada', 'paid', 100, 100, 2)",
    ))
    .execute(store.pool())
    .await
    .expect("a row of the earlier release");

    let fixture = Fixture {
        running: serve(Backend::Postgres(store.clone()), Config::default()).await,
        store: Some(store.clone()),
    };
    assert_eq!(read_model_migrations(&store).await, vec![1]);
    let body = until_listed(&fixture, "o-earlier").await;
    assert_eq!(body["orders"][0]["paid_cents"], 100, "{body}");
    fixture.finish().await;
}
