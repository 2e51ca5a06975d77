//! Commands and the reads of an order: the happy path and its history, each error's
//! status, conflicts, correlation ids, trace contexts.

use es_core::RetryPolicy;
use tokio::task::JoinSet;

use orders_service::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{
    Fixture, assert_error, client, get, json_of, on_both_stores, order_id, place, placement, post,
};

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

/// A canonical W3C trace context, as a caller's tracer would send it.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn trusting_traceparent() -> Config {
    Config {
        trust_traceparent: true,
        ..Config::default()
    }
}

/// Places order `id` and pays it, both with `traceparent` as the header, and answers the
/// `traceparent` of each event of its history.
async fn traceparents_recorded(fixture: &Fixture, id: &str, traceparent: &str) -> Vec<Value> {
    for (path, body) in [
        ("place", placement(100)),
        ("pay", json!({ "amount_cents": 10, "reference": "r" })),
    ] {
        let response = client()
            .post(fixture.url(&format!("/orders/{id}/{path}")))
            .header("traceparent", traceparent)
            .json(&body)
            .send()
            .await
            .expect("answered");
        // Never refused, whatever the header holds.
        let (status, body) = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, history) = json_of(get(fixture, &format!("/orders/{id}/history")).await).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let events = history.as_array().expect("an array");
    assert_eq!(events.len(), 2, "{history}");
    events.iter().map(|e| e["traceparent"].clone()).collect()
}

on_both_stores!(
    trusted_traceparent_reaches_the_events,
    super::trusting_traceparent()
);

async fn trusted_traceparent_reaches_the_events(fixture: &Fixture) {
    let recorded = traceparents_recorded(fixture, &order_id(), TRACEPARENT).await;
    assert_eq!(recorded, vec![json!(TRACEPARENT); 2]);

    // An invalid one (here upper-case hex, which W3C forbids) is ignored, not refused.
    let invalid = TRACEPARENT.to_uppercase();
    let recorded = traceparents_recorded(fixture, &order_id(), &invalid).await;
    assert_eq!(recorded, vec![Value::Null; 2]);
    let recorded = traceparents_recorded(fixture, &order_id(), "not a trace context").await;
    assert_eq!(recorded, vec![Value::Null; 2]);
}

on_both_stores!(
    untrusted_traceparent_is_ignored,
    orders_service::Config::default()
);

async fn untrusted_traceparent_is_ignored(fixture: &Fixture) {
    let recorded = traceparents_recorded(fixture, &order_id(), TRACEPARENT).await;
    assert_eq!(recorded, vec![Value::Null; 2]);
}
