//! Correlation ids: the `x-correlation-id` header of a request (or a new UUID v7) goes
//! into the metadata of the events its command records and back out in the response's
//! header, so that one id ties a client's request, the events and the logs together.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::error::ApiError;

/// The header, in requests and responses.
pub const HEADER: &str = "x-correlation-id";

/// The request's correlation id, which handlers take as an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelationId(pub Uuid);

/// Gives every request a correlation id, runs it in a span carrying the id, and echoes
/// the id in the response. A header that is not a UUID is refused with 400: silently
/// replacing it would break the caller's trail.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(HEADER) {
        None => Uuid::now_v7(),
        Some(value) => match value
            .to_str()
            .ok()
            .and_then(|t| Uuid::parse_str(t.trim()).ok())
        {
            Some(id) => id,
            None => {
                return ApiError::bad_request(format!("the `{HEADER}` header must be a UUID"))
                    .into_response();
            }
        },
    };
    request.extensions_mut().insert(CorrelationId(id));
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = request.uri().path(),
        correlation_id = %id,
    );
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
