//! The service's own metrics, through the `metrics` facade: a count and a latency of every
//! request by method, route template and status. With the `prometheus` feature the
//! facade's metrics (the core's too) are rendered at `/metrics`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Requests served, by `method`, `route` and `status`.
pub const REQUESTS: &str = "orders_service_http_requests_total";

/// Seconds until the response's head, by `method`, `route` and `status`.
pub const DURATION: &str = "orders_service_http_request_duration_seconds";

/// Records one request. Routes are their templates (`/orders/{id}`), never the ids in
/// them, so the number of series stays bounded.
pub async fn record(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!(REQUESTS, &labels).increment(1);
    metrics::histogram!(DURATION, &labels).record(start.elapsed().as_secs_f64());
    response
}

/// The Prometheus recorder, installed once per process.
#[cfg(feature = "prometheus")]
pub mod prometheus {
    use std::sync::OnceLock;

    use axum::extract::State;
    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

    /// The process's recorder: installed by the first call, `None` if another recorder
    /// was installed first (the facade takes one per process).
    pub fn handle() -> Option<PrometheusHandle> {
        static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
        HANDLE
            .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "cannot install the Prometheus recorder; /metrics stays empty"
                    );
                    None
                }
            })
            .clone()
    }

    /// The facade's metrics in the Prometheus text format.
    #[utoipa::path(
        get, path = "/metrics", tag = "operations",
        responses((status = 200, description = "Metrics in the Prometheus text format", content_type = "text/plain", body = String)),
    )]
    pub async fn metrics(State(handle): State<Option<PrometheusHandle>>) -> String {
        handle.map(|handle| handle.render()).unwrap_or_default()
    }
}
