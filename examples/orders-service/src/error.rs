//! Errors as HTTP responses: a status and a JSON body `{"error": kind, "message": ...}`.
//!
//! | kind          | status | when                                                        |
//! |---------------|--------|-------------------------------------------------------------|
//! | `bad_request` | 400    | malformed JSON, path, query or header; an invalid order id  |
//! | `not_found`   | 404    | the order has not been placed                               |
//! | `conflict`    | 409    | other writers kept changing the order through every retry   |
//! | `archived`    | 410    | the order's stream is archived                              |
//! | `rejected`    | 422    | the order's rules refuse the command                        |
//! | `internal`    | 500    | anything else (a stored event that does not decode, ...)    |
//! | `unavailable` | 503    | the store cannot be reached, or timed out                   |
//! | `stale`       | 504    | the read model did not reach `?after=` in time              |
//!
//! Messages name the order, versions and positions; never the payloads, and never the
//! store's own error text (a connection string, a SQL message), which goes to the log.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use es_core::{CommandError, LoadError, ReadError};
use orders::OrderError;

use crate::api::ErrorBody;

/// What kind of error a response reports: its status and its `error` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed.
    BadRequest,
    /// 404: no such order.
    NotFound,
    /// 409: a concurrency conflict outlasted the retries.
    Conflict,
    /// 410: the order is archived.
    Archived,
    /// 422: the command breaks the order's rules.
    Rejected,
    /// 500: a failure the client cannot fix.
    Internal,
    /// 503: the store is unavailable.
    Unavailable,
    /// 504: the read model is behind the requested position.
    Stale,
}

impl ErrorKind {
    /// The response status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Archived => StatusCode::GONE,
            Self::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Stale => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The body's `error` field.
    pub fn name(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Archived => "archived",
            Self::Rejected => "rejected",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::Stale => "stale",
        }
    }
}

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.name())]
pub struct ApiError {
    /// Its kind.
    pub kind: ErrorKind,
    /// Its message.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// Order `id` has not been placed.
    pub fn unknown_order(id: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!("order `{id}` has not been placed: place it first (POST /orders/{id}/place)"),
        )
    }

    /// What executing a command on order `id` failed with.
    pub fn command(id: &str, error: CommandError<OrderError>) -> Self {
        match error {
            CommandError::Rejected {
                error: OrderError::NotPlaced,
                ..
            } => Self::unknown_order(id),
            CommandError::Rejected { error, .. } => Self::new(
                ErrorKind::Rejected,
                format!("order `{id}` refuses the command: {error}"),
            ),
            error @ CommandError::Conflict { .. } => Self::new(
                ErrorKind::Conflict,
                format!("{error}; send the command again"),
            ),
            CommandError::InvalidId(error) => Self::invalid_id(id, &error),
            error @ CommandError::Archived { .. } => {
                Self::new(ErrorKind::Archived, error.to_string())
            }
            error if error.is_transient() => Self::store_failed(id, &error),
            error => Self::internal(id, &error),
        }
    }

    /// What loading order `id` failed with.
    pub fn load(id: &str, error: LoadError) -> Self {
        match error {
            LoadError::InvalidId(error) => Self::invalid_id(id, &error),
            error @ LoadError::Archived { .. } => Self::new(ErrorKind::Archived, error.to_string()),
            LoadError::Read { source, .. } => Self::read(id, &source),
            error => Self::internal(id, &error),
        }
    }

    /// What reading the events of order `id` (or the log, for an empty `id`) failed with.
    pub fn read(id: &str, error: &ReadError) -> Self {
        if error.is_transient() {
            Self::store_failed(id, error)
        } else {
            Self::internal(id, error)
        }
    }

    fn invalid_id(id: &str, error: &es_core::StreamIdError) -> Self {
        Self::bad_request(format!(
            "`{}` is not a valid order id: {error}",
            id.escape_debug()
        ))
    }

    /// The store failed for a moment: logged whole, answered with 503.
    pub fn store_failed(id: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::warn!(order = id, error, "store unavailable");
        Self::new(
            ErrorKind::Unavailable,
            format!("the event store is unavailable ({error}); try again shortly"),
        )
    }

    /// Any other failure: logged whole, answered with 500 and the top-level message only.
    pub fn internal(id: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(order = id, error, "request failed");
        Self::new(ErrorKind::Internal, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.kind.name().to_owned(),
            message: self.message,
        };
        (self.kind.status(), Json(body)).into_response()
    }
}

// axum's own rejections of malformed requests, in the service's error shape. Their text
// names what did not parse (a missing field, a wrong type) and where.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use es_core::{ExpectedVersion, StreamId, Version};

    use super::*;

    fn stream() -> StreamId {
        StreamId::new("order", "o-1").unwrap_or_else(|e| panic!("valid id: {e}"))
    }

    #[test]
    fn commands_map_to_their_statuses() {
        let rejected = ApiError::command(
            "o-1",
            CommandError::Rejected {
                stream: stream(),
                error: OrderError::AlreadyPaid,
            },
        );
        assert_eq!(rejected.kind.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(rejected.message.contains("already paid"), "{rejected}");

        let unknown = ApiError::command(
            "o-1",
            CommandError::Rejected {
                stream: stream(),
                error: OrderError::NotPlaced,
            },
        );
        assert_eq!(unknown.kind, ErrorKind::NotFound);

        // The conflict that outlasted the retries, which a test over HTTP cannot provoke
        // at will.
        let conflict = ApiError::command(
            "o-1",
            CommandError::Conflict {
                stream: stream(),
                attempts: 10,
                expected: ExpectedVersion::Exact(Version::new(2)),
                actual: Version::new(3),
            },
        );
        assert_eq!(conflict.kind.status(), StatusCode::CONFLICT);
        assert!(conflict.message.contains("10 attempts"), "{conflict}");

        let archived = ApiError::command("o-1", CommandError::Archived { stream: stream() });
        assert_eq!(archived.kind.status(), StatusCode::GONE);
    }

    #[test]
    fn store_failures_are_unavailable_only_when_transient() {
        let down = ReadError::Store(
            es_core::StoreError::new("log read", "refused")
                .with_kind(es_core::StoreErrorKind::Unavailable),
        );
        assert_eq!(
            ApiError::read("o-1", &down).kind.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let broken = ReadError::Corrupt {
            detail: "bad version".to_owned(),
        };
        assert_eq!(
            ApiError::read("o-1", &broken).kind.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
