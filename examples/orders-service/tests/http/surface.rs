//! What the service says of itself: its OpenAPI document and its metrics.

use orders_service::server::ROUTES;
use reqwest::StatusCode;

use crate::support::{Fixture, get, json_of, on_both_stores};

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
    let fixture = Fixture::memory(orders_service::Config::default()).await;
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

/// What a client chooses (its method, its path) never becomes a label of its own.
#[cfg(feature = "prometheus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_labels_stay_in_closed_sets() {
    let fixture = Fixture::memory(orders_service::Config::default()).await;
    let scanned = format!("/wp-admin-{}", uuid::Uuid::now_v7().simple());
    assert_eq!(
        get(&fixture, &scanned).await.status(),
        StatusCode::NOT_FOUND
    );
    let purge = reqwest::Method::from_bytes(b"PURGE-EVERYTHING").expect("a method");
    let response = crate::support::client()
        .request(purge, fixture.url("/orders"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let text = get(&fixture, "/metrics")
        .await
        .text()
        .await
        .expect("a body");
    assert!(!text.contains(&scanned), "{text}");
    assert!(!text.contains("PURGE"), "{text}");
    let counted = |route: &str, method: &str, status: &str| {
        text.lines().any(|line| {
            line.starts_with("orders_service_http_requests_total")
                && line.contains(&format!("route=\"{route}\""))
                && line.contains(&format!("method=\"{method}\""))
                && line.contains(&format!("status=\"{status}\""))
        })
    };
    assert!(counted("unmatched", "GET", "404"), "{text}");
    assert!(counted("/orders", "other", "405"), "{text}");
    fixture.finish().await;
}
