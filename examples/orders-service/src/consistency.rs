//! Read-your-writes: waiting until the read model includes a given log position.
//!
//! A command's response carries the position of its last event
//! ([`Committed::position`](es_core::Committed::position)); a read of the read model with
//! `?after=` that position waits here until the runner's committed checkpoint has passed
//! every event up to it that the read model reads
//! ([`StatusHandle::wait_for`](es_core::StatusHandle::wait_for)). The runner delivers the
//! log in position order and never skips an event, so the read model then includes the
//! write.
//!
//! This is the one place that knows how, so that the handler only sees the outcome.

use std::time::Duration;

use es_core::{Position, StatusHandle, WaitError};

use crate::backend::Orders;
use crate::error::{ApiError, ErrorKind};

/// Waits, up to `wait`, until the runner behind `status` (reading `orders`' store) has
/// seen `position`; returns its checkpoint then.
///
/// # Errors
///
/// 504 `stale` once `wait` has passed first, 503 `unavailable` when the runner has failed
/// or the store cannot be read for a moment, 500 otherwise.
pub async fn wait_for_checkpoint(
    orders: &Orders,
    status: &StatusHandle,
    position: Position,
    wait: Duration,
) -> Result<Option<Position>, ApiError> {
    match orders.wait_for(status, position, wait).await {
        Ok(()) => Ok(status.get().position),
        Err(error @ WaitError::Timeout { .. }) => Err(ApiError::new(
            ErrorKind::Stale,
            format!("{error}; read again later"),
        )),
        Err(WaitError::Failed { projection, .. }) => {
            // The runner's last error may quote an event; it goes to the log only.
            tracing::warn!(
                projection,
                "read model runner failed; it is being restarted"
            );
            Err(ApiError::new(
                ErrorKind::Unavailable,
                format!(
                    "the read model `{projection}` failed before reaching position {position}; it is being restarted: try again shortly"
                ),
            ))
        }
        Err(WaitError::Read { source, .. }) => Err(ApiError::read("", &source)),
        Err(error) => Err(ApiError::internal("", &error)),
    }
}
