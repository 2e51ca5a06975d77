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
