//! The service's own metrics, through the `metrics` facade: a count and a latency of every
//! request by method, route template and status. With the `prometheus` feature the
//! facade's metrics (the core's too) are rendered at `/metrics`.
//!
//! Every label takes its value from a closed set, whatever a client sends: each distinct
//! set of labels is a series the recorder keeps for the life of the process, so a label
//! copied from the request (an extension method, a scanned path) would let any client grow
//! the service's memory and its monitoring bill.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// Requests served, by `method`, `route` and `status`.
pub const REQUESTS: &str = "orders_service_http_requests_total";

/// Seconds until the response's head, by `method`, `route` and `status`.
pub const DURATION: &str = "orders_service_http_request_duration_seconds";

/// The `route` label of a request that matched no route (a 404 of the router).
pub const UNMATCHED: &str = "unmatched";

/// The `method` label of a method outside HTTP's standard ones (an extension method).
pub const OTHER_METHOD: &str = "other";

/// The `method` label of `method`: its name if it is one of the nine methods HTTP
/// defines, [`OTHER_METHOD`] for any other (HTTP lets a client send any token as its
/// method).
pub fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or(OTHER_METHOD, Method::as_str)
}

/// The `route` label of a request: the template of the route it matched
/// (`/orders/{id}`, never the id in it), or [`UNMATCHED`], never the path it asked for.
pub fn route_label(matched: Option<&MatchedPath>) -> String {
    matched.map_or(UNMATCHED, MatchedPath::as_str).to_owned()
}

/// Records one request, labelled by [`method_label`], [`route_label`] and the status
/// code (a number of three digits, which hyper enforces), so the number of series stays
/// bounded.
pub async fn record(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let route = route_label(request.extensions().get::<MatchedPath>());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status),
    ];
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a failed step is a failed test")]

    use axum::http::Method;

    use super::{OTHER_METHOD, UNMATCHED, method_label, route_label};

    #[test]
    fn a_request_that_matched_no_route_is_unmatched() {
        // Whatever its path was: the path never reaches the label.
        assert_eq!(route_label(None), UNMATCHED);
    }

    #[test]
    fn standard_methods_keep_their_names() {
        for name in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ] {
            assert_eq!(
                method_label(&Method::from_bytes(name.as_bytes()).unwrap()),
                name
            );
        }
    }

    #[test]
    fn any_other_method_is_other() {
        for name in ["PURGE", "PROPFIND", "get", "X-ANYTHING-A-CLIENT-LIKES"] {
            assert_eq!(
                method_label(&Method::from_bytes(name.as_bytes()).unwrap()),
                OTHER_METHOD,
                "{name}"
            );
        }
    }
}
