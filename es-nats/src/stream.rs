//! The JetStream stream the relay publishes to: created or checked on start, and asked
//! what it holds last.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use es_core::Position;
use uuid::Uuid;

use crate::error::RelayError;
use crate::message::Described;

/// How the relay's JetStream stream is set up when it does not exist yet.
#[derive(Debug, Clone)]
pub(crate) struct StreamSpec {
    pub(crate) name: String,
    /// One filter per route, such as `orders.*`.
    pub(crate) subjects: Vec<String>,
    pub(crate) duplicate_window: Duration,
    pub(crate) max_age: Option<Duration>,
}

/// Creates the stream, or checks that the existing one can take the relay's messages:
/// every route's subjects, and a duplicate window.
pub(crate) async fn ensure(jetstream: &Context, spec: &StreamSpec) -> Result<(), RelayError> {
    let conflict = |reason: String| RelayError::StreamConflict {
        stream: spec.name.clone(),
        reason,
    };
    match jetstream.get_stream(&spec.name).await {
        Ok(mut stream) => {
            let info = stream.info().await.map_err(RelayError::jetstream)?;
            let config = &info.config;
            for subject in &spec.subjects {
                if !config.subjects.iter().any(|held| covers(held, subject)) {
                    return Err(conflict(format!(
                        "its subjects {:?} do not cover `{subject}`; add it to the stream or \
                         relay to another stream",
                        config.subjects
                    )));
                }
            }
            if config.retention != RetentionPolicy::Limits {
                return Err(conflict(format!(
                    "its retention is {:?}: messages leave it when consumed, so it cannot say \
                     what was relayed; the relay needs limits retention",
                    config.retention
                )));
            }
            if config.duplicate_window.is_zero() {
                return Err(conflict(
                    "its duplicate window is 0, so a message published again after a crash \
                     would be stored twice; set one (the relay's default is 2 minutes)"
                        .to_owned(),
                ));
            }
            Ok(())
        }
        Err(error)
            if matches!(
                error.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            create(jetstream, spec).await
        }
        Err(error) => Err(RelayError::jetstream(error)),
    }
}

async fn create(jetstream: &Context, spec: &StreamSpec) -> Result<(), RelayError> {
    let config = Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        duplicate_window: spec.duplicate_window,
        max_age: spec.max_age.unwrap_or_default(),
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        description: Some("Events relayed from an es-rs event store".to_owned()),
        ..Config::default()
    };
    jetstream
        .create_stream(config)
        .await
        .map(drop)
        .map_err(|error| RelayError::StreamConflict {
            stream: spec.name.clone(),
            reason: format!("it could not be created: {error}"),
        })
}

/// Whether subject filter `held` matches every subject `wanted` matches.
fn covers(held: &str, wanted: &str) -> bool {
    let mut held = held.split('.');
    let mut wanted = wanted.split('.');
    loop {
        match (held.next(), wanted.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(token)) if token != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The newest message the stream holds, as the relay published it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastRelayed {
    pub(crate) sequence: u64,
    pub(crate) event_id: Uuid,
    pub(crate) position: Position,
}

/// How far back past deleted messages the relay looks for the newest one it holds.
const WALK_BACK: u64 = 10_000;

/// The newest message the stream holds: the last sequence, or, if that message was
/// deleted (by hand, or a subject purged), the newest one before it.
pub(crate) async fn last_relayed(
    jetstream: &Context,
    name: &str,
) -> Result<Option<LastRelayed>, RelayError> {
    let mut stream = jetstream
        .get_stream(name)
        .await
        .map_err(RelayError::jetstream)?;
    let state = stream
        .info()
        .await
        .map_err(RelayError::jetstream)?
        .state
        .clone();
    if state.messages == 0 {
        return Ok(None);
    }
    let lowest = state
        .first_sequence
        .max(state.last_sequence.saturating_sub(WALK_BACK));
    let mut sequence = state.last_sequence;
    let message = loop {
        match stream.get_raw_message(sequence).await {
            Ok(message) => break message,
            Err(error)
                if error.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound
                    && sequence > lowest =>
            {
                sequence -= 1;
            }
            Err(error)
                if error.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound =>
            {
                return Err(RelayError::StreamConflict {
                    stream: name.to_owned(),
                    reason: format!(
                        "it holds {} messages, but none of the last {WALK_BACK} sequences \
                         before {}: too many deleted to find where to resume",
                        state.messages, state.last_sequence
                    ),
                });
            }
            Err(error) => return Err(RelayError::jetstream(error)),
        }
    };
    let described =
        Described::read(message.subject.as_str(), Some(&message.headers)).map_err(|error| {
            RelayError::StreamConflict {
                stream: name.to_owned(),
                reason: format!(
                    "its last message (sequence {sequence}) was not published by an es-rs relay \
                 ({error}); a relay must be the stream's only publisher"
                ),
            }
        })?;
    Ok(Some(LastRelayed {
        sequence: state.last_sequence,
        event_id: described.event_id,
        position: described.position,
    }))
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn subject_filters_cover_as_nats_matches() {
        assert!(covers("orders.*", "orders.*"));
        assert!(covers("orders.>", "orders.*"));
        assert!(covers(">", "shop.orders.*"));
        assert!(covers("*.*", "orders.*"));
        assert!(!covers("orders.*", "orders.>"));
        assert!(!covers("orders.*", "shop.orders.*"));
        assert!(!covers("orders", "orders.*"));
        assert!(!covers("invoices.*", "orders.*"));
    }
}
