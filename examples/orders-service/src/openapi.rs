//! The service's OpenAPI 3.1 document, derived from the handlers' `#[utoipa::path]`
//! attributes and the bodies' `ToSchema` derives, served at `/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

use crate::api;
use crate::routes;

/// The document's derivation: every handler and body.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Orders service",
        description = "The orders example of es-rs over HTTP: commands, reads, a read model \
                       with read-your-writes, and the live log as server-sent events. Every \
                       response carries `x-correlation-id`; errors are \
                       `{\"error\": kind, \"message\": ...}`.",
    ),
    paths(
        routes::place, routes::pay, routes::prepare, routes::ship,
        routes::get_order, routes::get_order_as_of, routes::history,
        routes::list_orders, routes::events, openapi_json,
    ),
    components(schemas(
        api::Item, api::PlaceOrder, api::Pay, api::Prepare, api::Ship,
        api::CommandAccepted, api::Status, api::Shipment, api::OrderView,
        api::RecordedEvent, api::OrderRow, api::OrderList, api::ErrorBody,
    )),
    tags(
        (name = "commands", description = "Change an order: one route per command"),
        (name = "reads", description = "An order's state, history and past states; the read model; the live log"),
        (name = "operations", description = "The service itself"),
    ),
)]
pub struct ApiDoc;

#[cfg(feature = "prometheus")]
#[derive(OpenApi)]
#[openapi(paths(crate::observe::prometheus::metrics))]
struct MetricsDoc;

/// The document, with `/metrics` when the `prometheus` feature serves it.
pub fn document() -> utoipa::openapi::OpenApi {
    #[allow(unused_mut, reason = "changed only with the `prometheus` feature")]
    let mut doc = ApiDoc::openapi();
    #[cfg(feature = "prometheus")]
    doc.merge(MetricsDoc::openapi());
    doc
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
