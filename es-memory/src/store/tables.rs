//! Snapshots and the tables projection runners keep (checkpoints, parked events, leases),
//! held beside the log in the same shared state.

use std::future::{Future, ready};
use std::time::{Duration, Instant};

use es_core::{
    CheckpointStore, DeadLetterStore, DomainEvent, LeaseStore, LoadItem, ParkedEvent, Position,
    ReadError, Snapshot, SnapshotStore, StoreError, StreamId, Version,
};
use futures_core::Stream;
use uuid::Uuid;

use super::MemoryEventStore;

impl SnapshotStore for MemoryEventStore {
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut state = self.shared.write();
        match state.snapshots.get(&snapshot.stream_id) {
            Some(existing) if existing.version > snapshot.version => {}
            _ => {
                state.snapshots.insert(snapshot.stream_id.clone(), snapshot);
            }
        }
        ready(Ok(()))
    }

    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
        ready(Ok(self.shared.read().snapshots.get(stream).cloned()))
    }

    /// The start and the first page of events under one lock, then the events as they are
    /// kept, typed: no envelope is built (see `load.rs`).
    fn load_events<E: DomainEvent>(
        &self,
        stream: &StreamId,
        after: Version,
        snapshot: bool,
    ) -> impl Stream<Item = Result<LoadItem<E>, ReadError>> + Send + 'static + use<E> {
        self.loader::<E>(stream, after, snapshot)
    }
}

impl CheckpointStore for MemoryEventStore {
    fn load_checkpoint(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, StoreError>> + Send {
        ready(Ok(self.shared.read().checkpoints.get(name).copied()))
    }

    fn save_checkpoint(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.shared
            .write()
            .checkpoints
            .insert(name.to_owned(), position);
        ready(Ok(()))
    }

    fn delete_checkpoint(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.shared.write().checkpoints.remove(name);
        ready(Ok(()))
    }
}

impl DeadLetterStore for MemoryEventStore {
    fn park(&self, parked: ParkedEvent) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.shared
            .write()
            .parked
            .entry(parked.projection.clone())
            .or_default()
            .insert(parked.event_id, parked);
        ready(Ok(()))
    }

    fn parked(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Vec<ParkedEvent>, StoreError>> + Send {
        let mut parked: Vec<ParkedEvent> = self
            .shared
            .read()
            .parked
            .get(projection)
            .map(|events| events.values().cloned().collect())
            .unwrap_or_default();
        parked.sort_by_key(|event| event.position);
        ready(Ok(parked))
    }

    fn unpark(
        &self,
        projection: &str,
        event_id: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        if let Some(events) = self.shared.write().parked.get_mut(projection) {
            events.remove(&event_id);
        }
        ready(Ok(()))
    }
}

impl LeaseStore for MemoryEventStore {
    fn acquire_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let now = Instant::now();
        let mut state = self.shared.write();
        let free = state.leases.get(name).is_none_or(|(holder, expires)| {
            *holder == owner || expires.is_some_and(|expires| expires <= now)
        });
        if free {
            state
                .leases
                .insert(name.to_owned(), (owner, now.checked_add(ttl)));
        }
        ready(Ok(free))
    }

    fn renew_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let now = Instant::now();
        let mut state = self.shared.write();
        // An expired lease stays recorded under its holder until another owner takes it.
        let held = match state.leases.get_mut(name) {
            Some((holder, expires)) if *holder == owner => {
                *expires = now.checked_add(ttl);
                true
            }
            _ => false,
        };
        ready(Ok(held))
    }

    fn release_lease(
        &self,
        name: &str,
        owner: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut state = self.shared.write();
        if state
            .leases
            .get(name)
            .is_some_and(|(holder, _)| *holder == owner)
        {
            state.leases.remove(name);
        }
        ready(Ok(()))
    }
}
