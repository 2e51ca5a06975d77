//! [`RunnerError`]: why a runner stopped, and which failures a live runner outlasts.

use std::time::Duration;

use crate::error::{BoxError, ReadError, StoreError};
use crate::stream::Position;

/// Why a runner stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The projection failed on an event and its policy said stop.
    #[error(
        "projection `{projection}` failed on event `{event_type}` at version {version} of stream `{stream}` (position {position}) after {attempts} attempts"
    )]
    Handler {
        /// The projection's checkpoint key.
        projection: String,
        /// The event's stream.
        stream: crate::stream::StreamId,
        /// Its version.
        version: crate::stream::Version,
        /// Its type.
        event_type: String,
        /// Its position.
        position: Position,
        /// How many times it was tried.
        attempts: u32,
        /// The projection's last error.
        #[source]
        source: BoxError,
    },
    /// The projection's storage failed for a moment while it handled an event
    /// ([`Projection::is_transient`](crate::Projection::is_transient)): nothing of the batch was committed. A live runner
    /// starts over from its checkpoint after a pause.
    #[error(
        "projection `{projection}` was interrupted at position {position}: its storage failed for a moment"
    )]
    Interrupted {
        /// The projection's checkpoint key.
        projection: String,
        /// The event it was handling.
        position: Position,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// Committing a batch failed.
    #[error("projection `{projection}` could not commit at position {position}")]
    Commit {
        /// The projection's checkpoint key.
        projection: String,
        /// The position of the batch's last event.
        position: Position,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// A projection that keeps its own checkpoint
    /// ([`Projection::keeps_own_checkpoint`](crate::Projection::keeps_own_checkpoint))
    /// could not load it, with an error it does not call transient
    /// ([`Projection::is_transient`](crate::Projection::is_transient)): a live runner stops
    /// with it rather than loading it again and again. (A transient one is a
    /// [`Commit`](RunnerError::Commit) error, which a live runner starts over after.)
    #[error("projection `{projection}` could not load the checkpoint it keeps")]
    LoadCheckpoint {
        /// The projection's checkpoint key.
        projection: String,
        /// The projection's error.
        #[source]
        source: BoxError,
    },
    /// Reading the log failed, or an event cannot be decoded as the projection's type.
    #[error("projection `{projection}` cannot read the log")]
    Read {
        /// The projection's checkpoint key.
        projection: String,
        /// The failure.
        #[source]
        source: ReadError,
    },
    /// The store failed (checkpoints, parked events, leases).
    #[error("projection `{projection}`: store failure")]
    Store {
        /// The projection's checkpoint key.
        projection: String,
        /// The failure.
        #[source]
        source: StoreError,
    },
    /// Resetting the projection for a rebuild failed.
    #[error("projection `{projection}` could not be reset")]
    Reset {
        /// The projection's checkpoint key.
        projection: String,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// Events committed before a catch-up stayed held back from log readers past the
    /// runner's catch-up wait: a transaction that began before them is still open.
    #[error(
        "projection `{projection}` waited {waited:?} for the log to let it read position {position}{}; find the open transaction (PgEventStore::horizon names it) or wait longer (with_catch_up_wait)",
        cause.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    HeldBack {
        /// The projection's checkpoint key.
        projection: String,
        /// The position it waited for.
        position: Position,
        /// How long it waited.
        waited: Duration,
        /// What holds the log back, as the store tells ([`EventStore::stall`](crate::EventStore::stall)).
        cause: Option<String>,
    },
    /// Another instance holds the projection's lease.
    #[error("projection `{projection}` is run by another instance (it holds the lease)")]
    LeaseHeld {
        /// The projection's checkpoint key.
        projection: String,
    },
}

impl RunnerError {
    /// Whether a live runner starts over after it (from its committed checkpoint): a
    /// failed commit (a lost connection, an instance that moved the checkpoint first), a
    /// projection or store interrupted for a moment, or a read the store failed for a
    /// moment; not a lasting store failure (a missing privilege), which would only fail
    /// again.
    pub(super) fn is_restartable(&self) -> bool {
        match self {
            Self::Interrupted { .. } => true,
            // A store failure that lasts (a missing table, a revoked privilege) would only
            // fail again; anything else (a lost connection, an instance that moved the
            // checkpoint first) is worth starting over for.
            Self::Commit { source, .. } => {
                crate::error::store_failure_within(&**source).is_none_or(StoreError::is_transient)
            }
            Self::Store { source, .. } => source.is_transient(),
            Self::Read { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreErrorKind;

    fn store_error(kind: StoreErrorKind) -> StoreError {
        StoreError::new("checkpoint save", "the server went away").with_kind(kind)
    }

    #[test]
    fn a_live_runner_starts_over_after_failures_that_pass() {
        let projection = "view".to_owned();
        let position = Position::START;
        let transient = RunnerError::Store {
            projection: projection.clone(),
            source: store_error(StoreErrorKind::Unavailable),
        };
        assert!(transient.is_restartable());
        let interrupted = RunnerError::Interrupted {
            projection: projection.clone(),
            position,
            source: Box::new(std::io::Error::other("timeout")),
        };
        assert!(interrupted.is_restartable());
        // A failed commit with no store failure behind it (the projection's own storage,
        // an instance that moved the checkpoint first) is worth starting over for.
        let commit = RunnerError::Commit {
            projection: projection.clone(),
            position,
            source: Box::new(std::io::Error::other("connection reset")),
        };
        assert!(commit.is_restartable());
        // So is one whose store failure passes.
        let commit = RunnerError::Commit {
            projection,
            position,
            source: Box::new(store_error(StoreErrorKind::Timeout)),
        };
        assert!(commit.is_restartable());
    }

    #[test]
    fn a_live_runner_stops_at_failures_that_last() {
        let projection = "view".to_owned();
        let position = Position::START;
        let lasting = RunnerError::Store {
            projection: projection.clone(),
            source: store_error(StoreErrorKind::Other),
        };
        assert!(!lasting.is_restartable());
        let commit = RunnerError::Commit {
            projection: projection.clone(),
            position,
            source: Box::new(store_error(StoreErrorKind::Other)),
        };
        assert!(
            !commit.is_restartable(),
            "a lasting store failure behind a commit"
        );
        let handler = RunnerError::Handler {
            projection: projection.clone(),
            stream: crate::stream::StreamId::new("account", "1").expect("a valid stream id"),
            version: crate::stream::Version::new(1),
            event_type: "Opened".to_owned(),
            position,
            attempts: 4,
            source: Box::new(std::io::Error::other("bad data")),
        };
        assert!(!handler.is_restartable());
        let load = RunnerError::LoadCheckpoint {
            projection: projection.clone(),
            source: Box::new(std::io::Error::other("stream conflicts")),
        };
        assert!(!load.is_restartable());
        let held = RunnerError::LeaseHeld { projection };
        assert!(!held.is_restartable());
    }
}
