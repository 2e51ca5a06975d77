//! Where a runner's checkpoint and parked events live: the [`CheckpointMode`], and the
//! [`Checkpoint`] that loads, commits and parks accordingly.

use uuid::Uuid;

use super::RunnerError;
use crate::error::{BoxError, StoreError};
use crate::projection::Projection;
use crate::store::{CheckpointStore, DeadLetterStore, ParkedEvent};
use crate::stream::Position;

/// Who keeps a projection's checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CheckpointMode {
    /// The store ([`CheckpointStore`]), saved after each of the projection's commits;
    /// parked events go to the store's dead-letter table.
    Store,
    /// The projection, with its writes in one transaction
    /// ([`Projection::keeps_own_checkpoint`]): a failed event's batch is rolled back
    /// whole, and replayed event by event to commit the others. Parked events go to the
    /// store.
    Projection,
    /// The runner itself, in memory
    /// ([`with_checkpoint_in_memory`](crate::ProjectionRunner::with_checkpoint_in_memory)):
    /// for a read model held in process memory, which every process builds from the start
    /// of the log. Its parked events stay in the runner too: they belong to this process's
    /// read model, not to a table other processes share.
    Memory,
}

impl CheckpointMode {
    /// Where `projection` says its checkpoint lives.
    pub(super) fn of<P: Projection>(projection: &P) -> Self {
        if projection.keeps_own_checkpoint() {
            Self::Projection
        } else {
            Self::Store
        }
    }
}

/// A runner's checkpoint: where it lives, what was last committed, and (in memory) the
/// parked events.
#[derive(Debug)]
pub(super) struct Checkpoint {
    mode: CheckpointMode,
    /// Whether the projection's writes commit and roll back together
    /// ([`Projection::keeps_own_checkpoint`]), so that a failed event takes its batch's
    /// other writes with it. Its own, whichever [`CheckpointMode`] the runner uses: a
    /// projection that keeps its own checkpoint still rolls back with the checkpoint in
    /// memory.
    rolls_back_batches: bool,
    /// The position loaded or committed last: where a runner in memory starts over.
    committed: Option<Position>,
    parked_here: Vec<ParkedEvent>,
}

impl Checkpoint {
    /// The checkpoint of `projection`, where it says it lives.
    pub(super) fn of<P: Projection>(projection: &P) -> Self {
        Self {
            mode: CheckpointMode::of(projection),
            rolls_back_batches: projection.keeps_own_checkpoint(),
            committed: None,
            parked_here: Vec::new(),
        }
    }

    pub(super) fn mode(&self) -> CheckpointMode {
        self.mode
    }

    /// Whether a failed event's batch is rolled back whole (and replayed event by event
    /// to commit the others), rather than committed up to the failed event.
    pub(super) fn rolls_back_batches(&self) -> bool {
        self.rolls_back_batches
    }

    pub(super) fn set_mode(&mut self, mode: CheckpointMode) {
        self.mode = mode;
    }

    /// Loads the checkpoint saved under `key`, which reading then starts after.
    pub(super) async fn load<P, S>(
        &mut self,
        projection: &mut P,
        store: &S,
        key: &str,
    ) -> Result<Option<Position>, RunnerError>
    where
        P: Projection,
        S: CheckpointStore,
    {
        self.committed = match self.mode {
            CheckpointMode::Memory => self.committed,
            CheckpointMode::Projection => match projection.load_checkpoint(key).await {
                Ok(position) => position,
                // What the projection says lasts stops a live runner too: starting over
                // would only load it again.
                Err(e) if !projection.is_transient(&e) => {
                    return Err(RunnerError::LoadCheckpoint {
                        projection: key.to_owned(),
                        source: Box::new(e),
                    });
                }
                Err(e) => {
                    return Err(RunnerError::Commit {
                        projection: key.to_owned(),
                        position: Position::START,
                        source: Box::new(e),
                    });
                }
            },
            CheckpointMode::Store => {
                store
                    .load_checkpoint(key)
                    .await
                    .map_err(|source| RunnerError::Store {
                        projection: key.to_owned(),
                        source,
                    })?
            }
        };
        Ok(self.committed)
    }

    /// Commits the projection's writes up to `position` and the checkpoint with them.
    pub(super) async fn commit<P, S>(
        &mut self,
        projection: &mut P,
        store: &S,
        key: &str,
        position: Position,
    ) -> Result<(), RunnerError>
    where
        P: Projection,
        S: CheckpointStore,
    {
        let failed = |source| RunnerError::Commit {
            projection: key.to_owned(),
            position,
            source,
        };
        projection
            .commit(key, position)
            .await
            .map_err(|e| failed(Box::new(e)))?;
        // After the projection's commit: a crash between the two replays the batch (at
        // least once), where the other order would skip it.
        if self.mode == CheckpointMode::Store {
            store
                .save_checkpoint(key, position)
                .await
                .map_err(|e| failed(Box::new(e)))?;
        }
        self.committed = Some(position);
        Ok(())
    }

    /// The position committed under `key` by whichever instance holds the lease, read
    /// without preparing anything ([`Projection::committed_checkpoint`]): for a runner
    /// standing by: `Some` of what is stored (`Some(None)` when no checkpoint is, as after
    /// a reset), `None` when it cannot be read.
    pub(super) async fn peek<P, S>(
        &self,
        projection: &mut P,
        store: &S,
        key: &str,
    ) -> Option<Option<Position>>
    where
        P: Projection,
        S: CheckpointStore,
    {
        let read = match self.mode {
            CheckpointMode::Memory => return Some(self.committed),
            CheckpointMode::Store => store
                .load_checkpoint(key)
                .await
                .map_err(|e| Box::new(e) as BoxError),
            CheckpointMode::Projection => projection
                .committed_checkpoint(key)
                .await
                .map_err(|e| Box::new(e) as BoxError),
        };
        match read {
            Ok(position) => Some(position),
            Err(error) => {
                tracing::debug!(projection = %key, error = &*error as &dyn std::error::Error, "cannot read the checkpoint while standing by");
                None
            }
        }
    }

    /// Forgets the checkpoints under `keys`, for a rebuild: reading starts over at the
    /// beginning of the log. (A projection that keeps its own forgets it in its reset.)
    pub(super) async fn forget<S: CheckpointStore>(
        &mut self,
        store: &S,
        keys: &[String],
    ) -> Result<(), StoreError> {
        if self.mode == CheckpointMode::Store {
            for key in keys {
                store.delete_checkpoint(key).await?;
            }
        }
        Ok(())
    }

    /// Reading starts at the beginning of the log next time (after a rebuild's reset).
    pub(super) fn restart_from_the_beginning(&mut self) {
        self.committed = None;
    }

    /// The events parked under `key`, oldest first.
    pub(super) async fn parked<S: DeadLetterStore>(
        &self,
        store: &S,
        key: &str,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        match self.mode {
            CheckpointMode::Memory => Ok(self.parked_here.clone()),
            CheckpointMode::Store | CheckpointMode::Projection => store.parked(key).await,
        }
    }

    /// Parks `entry`, replacing an earlier record of the same event.
    pub(super) async fn park<S: DeadLetterStore>(
        &mut self,
        store: &S,
        entry: ParkedEvent,
    ) -> Result<(), StoreError> {
        match self.mode {
            CheckpointMode::Memory => {
                self.parked_here.retain(|e| e.event_id != entry.event_id);
                self.parked_here.push(entry);
                Ok(())
            }
            CheckpointMode::Store | CheckpointMode::Projection => store.park(entry).await,
        }
    }

    /// Unparks the event `event_id` parked under `key`.
    pub(super) async fn unpark<S: DeadLetterStore>(
        &mut self,
        store: &S,
        key: &str,
        event_id: Uuid,
    ) -> Result<(), StoreError> {
        match self.mode {
            CheckpointMode::Memory => {
                self.parked_here.retain(|e| e.event_id != event_id);
                Ok(())
            }
            CheckpointMode::Store | CheckpointMode::Projection => store.unpark(key, event_id).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use chrono::Utc;

    use super::*;
    use crate::event::{EventEnvelope, RawEvent};
    use crate::stream::{StreamId, Version};

    /// Checkpoints and parked events in maps, as a store keeps them.
    #[derive(Clone, Default)]
    struct Tables {
        checkpoints: Arc<Mutex<HashMap<String, Position>>>,
        parked: Arc<Mutex<Vec<ParkedEvent>>>,
    }

    impl CheckpointStore for Tables {
        async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
            Ok(self.checkpoints.lock().unwrap().get(name).copied())
        }

        async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
            self.checkpoints
                .lock()
                .unwrap()
                .insert(name.to_owned(), position);
            Ok(())
        }

        async fn delete_checkpoint(&self, name: &str) -> Result<(), StoreError> {
            self.checkpoints.lock().unwrap().remove(name);
            Ok(())
        }
    }

    impl DeadLetterStore for Tables {
        async fn park(&self, parked: ParkedEvent) -> Result<(), StoreError> {
            let mut table = self.parked.lock().unwrap();
            table.retain(|e| e.event_id != parked.event_id);
            table.push(parked);
            Ok(())
        }

        async fn parked(&self, projection: &str) -> Result<Vec<ParkedEvent>, StoreError> {
            Ok(self
                .parked
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.projection == projection)
                .cloned()
                .collect())
        }

        async fn unpark(&self, projection: &str, event_id: Uuid) -> Result<(), StoreError> {
            self.parked
                .lock()
                .unwrap()
                .retain(|e| e.projection != projection || e.event_id != event_id);
            Ok(())
        }
    }

    /// A projection that records its commits, keeping its own checkpoint or not.
    #[derive(Default)]
    struct View {
        own: bool,
        commits: Vec<Position>,
        fail_commits: bool,
        /// Fail loads: transiently (`Some(true)`) or not (`Some(false)`).
        fail_loads: Option<bool>,
    }

    impl Projection for View {
        type Event = RawEvent;
        type Error = std::io::Error;

        fn name(&self) -> &str {
            "view"
        }

        async fn handle(&mut self, _: &EventEnvelope<RawEvent>) -> Result<(), std::io::Error> {
            Ok(())
        }

        fn keeps_own_checkpoint(&self) -> bool {
            self.own
        }

        fn is_transient(&self, error: &std::io::Error) -> bool {
            error.kind() == std::io::ErrorKind::TimedOut
        }

        async fn load_checkpoint(&mut self, _: &str) -> Result<Option<Position>, std::io::Error> {
            match self.fail_loads {
                Some(true) => Err(std::io::ErrorKind::TimedOut.into()),
                Some(false) => Err(std::io::Error::other("stream conflicts")),
                None => Ok(self.commits.last().copied()),
            }
        }

        async fn commit(&mut self, _: &str, position: Position) -> Result<(), std::io::Error> {
            if self.fail_commits {
                return Err(std::io::Error::other("connection reset"));
            }
            self.commits.push(position);
            Ok(())
        }
    }

    fn at(n: u64) -> Position {
        Position::from_parts(n, 0)
    }

    fn parked(event_id: Uuid, error: &str) -> ParkedEvent {
        ParkedEvent {
            projection: "view".to_owned(),
            event_id,
            stream_id: StreamId::new("account", "1").unwrap(),
            version: Version::new(1),
            position: at(1),
            event_type: "Opened".to_owned(),
            error: error.to_owned(),
            attempts: 1,
            parked_at: Utc::now(),
        }
    }

    #[test]
    fn the_projection_decides_unless_the_runner_keeps_it_in_memory() {
        let own = View {
            own: true,
            ..View::default()
        };
        assert_eq!(CheckpointMode::of(&own), CheckpointMode::Projection);
        assert_eq!(CheckpointMode::of(&View::default()), CheckpointMode::Store);
        assert!(Checkpoint::of(&own).rolls_back_batches());
        assert!(!Checkpoint::of(&View::default()).rolls_back_batches());
    }

    #[test]
    fn in_memory_a_projection_keeping_its_own_still_rolls_back_its_batches() {
        let own = View {
            own: true,
            ..View::default()
        };
        let mut checkpoint = Checkpoint::of(&own);
        checkpoint.set_mode(CheckpointMode::Memory);
        assert!(checkpoint.rolls_back_batches());
        let mut checkpoint = Checkpoint::of(&View::default());
        checkpoint.set_mode(CheckpointMode::Memory);
        assert!(!checkpoint.rolls_back_batches());
    }

    #[tokio::test]
    async fn in_the_store_it_is_saved_after_the_projection_commits() {
        let tables = Tables::default();
        let mut view = View::default();
        let mut checkpoint = Checkpoint::of(&View::default());
        checkpoint
            .commit(&mut view, &tables, "view", at(3))
            .await
            .unwrap();
        assert_eq!(view.commits, [at(3)]);
        assert_eq!(tables.checkpoints.lock().unwrap().get("view"), Some(&at(3)));

        // A failed projection commit saves nothing.
        view.fail_commits = true;
        let error = checkpoint
            .commit(&mut view, &tables, "view", at(5))
            .await
            .unwrap_err();
        assert!(matches!(error, RunnerError::Commit { position, .. } if position == at(5)));
        assert_eq!(tables.checkpoints.lock().unwrap().get("view"), Some(&at(3)));

        let mut fresh = Checkpoint::of(&View::default());
        assert_eq!(
            fresh.load(&mut view, &tables, "view").await.unwrap(),
            Some(at(3))
        );
        fresh.forget(&tables, &["view".to_owned()]).await.unwrap();
        assert_eq!(fresh.load(&mut view, &tables, "view").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_projection_keeping_its_own_is_never_written_to_the_store() {
        let tables = Tables::default();
        let mut view = View {
            own: true,
            ..View::default()
        };
        let mut checkpoint = Checkpoint::of(&view);
        checkpoint
            .commit(&mut view, &tables, "view", at(4))
            .await
            .unwrap();
        assert!(tables.checkpoints.lock().unwrap().is_empty());
        let mut fresh = Checkpoint::of(&view);
        assert_eq!(
            fresh.load(&mut view, &tables, "view").await.unwrap(),
            Some(at(4))
        );
        // A rebuild leaves forgetting it to the projection's reset.
        tables.save_checkpoint("view", at(9)).await.unwrap();
        fresh.forget(&tables, &["view".to_owned()]).await.unwrap();
        assert!(tables.checkpoints.lock().unwrap().contains_key("view"));
    }

    #[tokio::test]
    async fn a_projections_load_error_restarts_a_live_runner_only_if_transient() {
        let tables = Tables::default();
        let mut view = View {
            own: true,
            fail_loads: Some(false),
            ..View::default()
        };
        let mut checkpoint = Checkpoint::of(&view);
        let error = checkpoint
            .load(&mut view, &tables, "view")
            .await
            .unwrap_err();
        assert!(
            matches!(error, RunnerError::LoadCheckpoint { .. }),
            "{error:?}"
        );
        assert!(!error.is_restartable());
        view.fail_loads = Some(true);
        let error = checkpoint
            .load(&mut view, &tables, "view")
            .await
            .unwrap_err();
        assert!(error.is_restartable(), "{error:?}");
    }

    #[tokio::test]
    async fn in_memory_neither_checkpoint_nor_parked_events_reach_the_store() {
        let tables = Tables::default();
        tables.save_checkpoint("view", at(7)).await.unwrap();
        let mut view = View::default();
        let mut checkpoint = Checkpoint::of(&view);
        checkpoint.set_mode(CheckpointMode::Memory);
        // A new process starts at the beginning, whatever the store holds.
        assert_eq!(
            checkpoint.load(&mut view, &tables, "view").await.unwrap(),
            None
        );
        checkpoint
            .commit(&mut view, &tables, "view", at(2))
            .await
            .unwrap();
        assert_eq!(view.commits, [at(2)]);
        assert_eq!(tables.checkpoints.lock().unwrap().get("view"), Some(&at(7)));
        assert_eq!(
            checkpoint.load(&mut view, &tables, "view").await.unwrap(),
            Some(at(2))
        );

        let event = Uuid::now_v7();
        checkpoint
            .park(&tables, parked(event, "first"))
            .await
            .unwrap();
        checkpoint
            .park(&tables, parked(event, "again"))
            .await
            .unwrap();
        let here = checkpoint.parked(&tables, "view").await.unwrap();
        assert_eq!(here.len(), 1, "parking again replaces the record");
        assert_eq!(here[0].error, "again");
        assert!(tables.parked.lock().unwrap().is_empty());
        checkpoint.unpark(&tables, "view", event).await.unwrap();
        assert!(checkpoint.parked(&tables, "view").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn outside_memory_parked_events_are_the_stores() {
        let tables = Tables::default();
        let mut checkpoint = Checkpoint::of(&View::default());
        let event = Uuid::now_v7();
        checkpoint
            .park(&tables, parked(event, "bad"))
            .await
            .unwrap();
        assert_eq!(tables.parked.lock().unwrap().len(), 1);
        assert_eq!(checkpoint.parked(&tables, "view").await.unwrap().len(), 1);
        checkpoint.unpark(&tables, "view", event).await.unwrap();
        assert!(tables.parked.lock().unwrap().is_empty());
    }
}
