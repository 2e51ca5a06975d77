//! Read-your-writes: waiting until the read model includes a given log position.
//!
//! A command's response carries the position of its last event; a read of the read model
//! with `?after=` that position waits here until the runner's committed checkpoint has
//! reached it. The runner delivers the log in position order and never skips an event
//! (stores hold the end back until nothing can commit before it), so a checkpoint at or
//! past the position means the event is in the read model.
//!
//! This is the one place that knows how: it polls the runner's [`StatusHandle`], which
//! is all the runner exposes today. When the core offers a way to wait for a checkpoint,
//! only [`wait_for_checkpoint`] changes.

use std::time::Duration;

use es_core::{Backoff, Position, RunnerState, StatusHandle};
use tokio::time::Instant;

/// The read model did not reach the position in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the read model has not reached position {wanted} after {waited:?} (it is at {}, its runner {state:?}); read again later",
    reached.map_or_else(|| "the start of the log".to_owned(), |p| p.to_string())
)]
pub struct NotYet {
    /// The position asked for.
    pub wanted: Position,
    /// Where the read model was when the wait ended.
    pub reached: Option<Position>,
    /// How long it waited.
    pub waited: Duration,
    /// What the runner was doing.
    pub state: RunnerState,
}

/// Waits, up to `wait`, until the runner behind `status` has committed a checkpoint at or
/// past `position`; returns that checkpoint.
///
/// # Errors
///
/// [`NotYet`] once `wait` has passed without it.
pub async fn wait_for_checkpoint(
    status: &StatusHandle,
    position: Position,
    wait: Duration,
) -> Result<Option<Position>, NotYet> {
    // Short first pauses: the runner commits within milliseconds of an append.
    const PAUSE: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(25));
    let deadline = Instant::now() + wait;
    let mut tries = 0;
    loop {
        let now = status.get();
        if now.position.is_some_and(|reached| reached >= position) {
            return Ok(now.position);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NotYet {
                wanted: position,
                reached: now.position,
                waited: wait,
                state: now.state,
            });
        }
        tries += 1;
        tokio::time::sleep(PAUSE.pause(tries).min(left)).await;
    }
}
