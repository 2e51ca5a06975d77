//! Loading an aggregate: what is loaded ([`Loaded`], [`AsOf`]), why it fails
//! ([`LoadError`]), and the catch-up from a snapshot through the later events.

use futures_util::StreamExt as _;

use crate::aggregate::Aggregate;
use crate::error::ReadError;
use crate::event::{DomainEvent as _, EventEnvelope, RawEvent};
use crate::store::{EventStore, LoadItem, LoadStart, Snapshot, SnapshotStore};
use crate::stream::{StreamId, StreamIdError, Version};

use super::{Repository, SnapshotPolicy};

/// An aggregate as loaded from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The aggregate's stream.
    pub stream_id: StreamId,
    /// The stream version the state includes ([`Version::INITIAL`] for a new aggregate).
    pub version: Version,
    /// The state.
    pub state: A,
}

/// Which past state [`Repository::load_as_of`] loads.
///
/// ```
/// use es_core::{AsOf, Version};
///
/// let before_shipping = AsOf::Version(Version::new(3));
/// let last_tuesday = AsOf::Time("2026-11-17T00:00:00Z".parse()?);
/// # let _ = (before_shipping, last_tuesday);
/// # Ok::<(), chrono::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AsOf {
    /// The state after the events up to this version (all of them, if the stream is
    /// shorter).
    Version(Version),
    /// The state after the events recorded at or before this time: the stream's longest
    /// prefix whose events were all recorded by then.
    Time(chrono::DateTime<chrono::Utc>),
    /// The state after every event: the latest state, which this also loads for an
    /// archived stream (that [`Repository::load`] refuses).
    Latest,
}

impl AsOf {
    /// Whether a snapshot taken after the event at `version` may hold only events of the
    /// state. For a time, that is checked on the event itself once it is read (see
    /// `Repository::catch_up_to`): the snapshot was taken by the application's clock and the
    /// event recorded by the store's.
    fn admits(self, snapshot: &Snapshot) -> bool {
        match self {
            Self::Version(version) => snapshot.version <= version,
            Self::Time(_) | Self::Latest => true,
        }
    }
}

/// Why an aggregate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The aggregate id does not make a valid stream id.
    #[error("invalid aggregate id")]
    InvalidId(#[from] StreamIdError),
    /// The stream is archived. Its history stays readable with [`Repository::history`]
    /// and [`Repository::load_as_of`].
    #[error("stream `{stream}` is archived")]
    Archived {
        /// The aggregate's stream.
        stream: StreamId,
    },
    /// Reading the stream failed.
    #[error("cannot load stream `{stream}`")]
    Read {
        /// The aggregate's stream.
        stream: StreamId,
        /// The read failure.
        #[source]
        source: ReadError,
    },
}

impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// The aggregate's current state: its snapshot if the policy keeps them and one is
    /// usable, then the events after it, read in one go ([`SnapshotStore::load_events`]),
    /// with whether the stream was archived when the load started. `None` if
    /// `refuse_archived` and the stream is archived, told before any event is decoded (an
    /// archived stream may hold events this build no longer reads).
    pub(super) async fn load_current(
        &self,
        stream: &StreamId,
        refuse_archived: bool,
    ) -> Result<Option<(Loaded<A>, bool)>, ReadError> {
        let snapshots = self.snapshots != SnapshotPolicy::Never;
        {
            // Boxed: a store's load (a decorator's above all) can be a large future, and
            // each command's future would carry it.
            let mut items = Box::pin(self.store.load_events::<A::Event>(
                stream,
                Version::INITIAL,
                snapshots,
            ));
            let start = load_start(stream, items.next().await)?;
            if refuse_archived && start.archived {
                return Ok(None);
            }
            let from = match start.snapshot {
                None => Some((A::default(), Version::INITIAL)),
                Some(snapshot) => self.usable(stream, snapshot),
            };
            if let Some((state, version)) = from {
                let loaded = self.fold(stream, state, version, items).await?;
                return Ok(Some((loaded, start.archived)));
            }
        }
        // The snapshot is of no use (logged): replay the whole stream instead (the first
        // load's stream is gone by now).
        let mut items = Box::pin(self.store.load_events::<A::Event>(
            stream,
            Version::INITIAL,
            false,
        ));
        let start = load_start(stream, items.next().await)?;
        if refuse_archived && start.archived {
            return Ok(None);
        }
        let loaded = self
            .fold(stream, A::default(), Version::INITIAL, items)
            .await?;
        Ok(Some((loaded, start.archived)))
    }

    /// Applies the events of a load to `state`, which includes the events up to `version`.
    async fn fold(
        &self,
        stream: &StreamId,
        mut state: A,
        mut version: Version,
        items: impl futures_core::Stream<Item = Result<LoadItem<A::Event>, ReadError>>,
    ) -> Result<Loaded<A>, ReadError> {
        futures_util::pin_mut!(items);
        while let Some(item) = items.next().await {
            match item? {
                LoadItem::Event {
                    version: next,
                    event,
                    ..
                } => {
                    // A stream's versions have no gaps: any other version is a store
                    // delivering out of order, which must fail rather than fold wrong.
                    if next != version.next() {
                        return Err(ReadError::Corrupt {
                            detail: format!(
                                "the load of `{stream}` read version {next} after {version}"
                            ),
                        });
                    }
                    state.apply(&event);
                    version = next;
                }
                LoadItem::Start(_) => {
                    return Err(ReadError::Corrupt {
                        detail: format!("the load of `{stream}` started twice"),
                    });
                }
            }
        }
        Ok(Loaded {
            stream_id: stream.clone(),
            version,
            state,
        })
    }

    /// Applies every event after `version` to `state`, which includes the events up to it,
    /// in one load; with whether the stream was archived when the load started.
    pub(super) async fn catch_up_current(
        &self,
        stream: &StreamId,
        state: A,
        version: Version,
    ) -> Result<(Loaded<A>, bool), ReadError> {
        let mut items = Box::pin(self.store.load_events::<A::Event>(stream, version, false));
        let start = load_start(stream, items.next().await)?;
        let loaded = self.fold(stream, state, version, items).await?;
        Ok((loaded, start.archived))
    }

    /// Applies the events after `start` (or all of them) to its state, up to `as_of`.
    ///
    /// Nothing past the target is decoded: an event a load does not include must not make
    /// it fail, even one this build cannot read (a newer schema version, an unknown type).
    pub(super) async fn catch_up(
        &self,
        stream: &StreamId,
        start: Option<(A, Version)>,
        as_of: Option<AsOf>,
    ) -> Result<Loaded<A>, ReadError> {
        let (mut state, mut version) = start.unwrap_or_else(|| (A::default(), Version::INITIAL));
        let target = match as_of {
            Some(AsOf::Time(time)) => return self.catch_up_to(stream, state, version, time).await,
            Some(AsOf::Version(target)) => target,
            Some(AsOf::Latest) | None => {
                return Ok(self.catch_up_current(stream, state, version).await?.0);
            }
        };
        if version < target {
            let events = self.store.read_stream::<A::Event>(stream, version.next());
            futures_util::pin_mut!(events);
            while let Some(envelope) = events.next().await {
                let envelope = envelope?;
                state.apply(&envelope.event);
                version = envelope.version;
                // Stop here rather than at the first later event: reading that one would
                // decode it.
                if version >= target {
                    break;
                }
            }
        }
        Ok(Loaded {
            stream_id: stream.clone(),
            version,
            state,
        })
    }

    /// Applies the events after `version` to `state` while they were recorded at or before
    /// `time`.
    ///
    /// The stream is read raw so that each event's recorded time is checked before its
    /// payload is decoded: the first event recorded too late ends the load undecoded.
    async fn catch_up_to(
        &self,
        stream: &StreamId,
        mut state: A,
        mut version: Version,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<Loaded<A>, ReadError> {
        // The snapshot was taken by the application's clock and its events recorded by the
        // store's, so its own last event is read again to check that it was recorded in
        // time.
        let mut check_start = version > Version::INITIAL;
        let from = if check_start { version } else { version.next() };
        let events = self.store.read_stream::<RawEvent>(stream, from);
        futures_util::pin_mut!(events);
        while let Some(envelope) = events.next().await {
            let envelope = envelope?;
            let included = envelope.recorded_at <= time;
            if std::mem::take(&mut check_start) {
                if included {
                    continue;
                }
                // The snapshot holds events recorded later: replay from the start instead.
                return Box::pin(self.catch_up(stream, None, Some(AsOf::Time(time)))).await;
            }
            if !included {
                break;
            }
            let RawEvent {
                event_type,
                schema_version,
                payload,
            } = envelope.event;
            let event =
                A::Event::decode(&event_type, schema_version, payload).map_err(|source| {
                    ReadError::decode(
                        envelope.event_id,
                        envelope.stream_id,
                        envelope.version,
                        envelope.position,
                        event_type,
                        schema_version,
                        source,
                    )
                })?;
            state.apply(&event);
            version = envelope.version;
        }
        Ok(Loaded {
            stream_id: stream.clone(),
            version,
            state,
        })
    }

    /// The usable snapshot of `stream`, if the policy keeps them (and, for a load `as_of`,
    /// it holds no later events). A snapshot that cannot be used (another schema version,
    /// a state that no longer decodes, a failing backend) is skipped with a warning:
    /// replaying the events always gives the right state.
    pub(super) async fn load_snapshot(
        &self,
        stream: &StreamId,
        as_of: Option<AsOf>,
    ) -> Option<(A, Version)> {
        if self.snapshots == SnapshotPolicy::Never {
            return None;
        }
        let snapshot = match self.store.load_snapshot(stream).await {
            Ok(snapshot) => snapshot?,
            Err(error) => {
                tracing::warn!(%stream, error = &error as &dyn std::error::Error, "cannot load snapshot; replaying events");
                return None;
            }
        };
        if as_of.is_some_and(|as_of| !as_of.admits(&snapshot)) {
            return None;
        }
        self.usable(stream, snapshot)
    }

    /// The state of `snapshot`, unless it is of another schema version or no longer
    /// decodes (logged).
    fn usable(&self, stream: &StreamId, snapshot: Snapshot) -> Option<(A, Version)> {
        if snapshot.schema_version != A::SNAPSHOT_VERSION {
            tracing::info!(%stream, stored = snapshot.schema_version, current = A::SNAPSHOT_VERSION, "ignoring snapshot of another schema version");
            return None;
        }
        match A::decode_snapshot(snapshot.state)? {
            Ok(state) => Some((state, snapshot.version)),
            Err(error) => {
                // serde's message quotes the state's values: log what is wrong only.
                let error = crate::PayloadError::from(error);
                tracing::warn!(%stream, version = %snapshot.version, error = &error as &dyn std::error::Error, "cannot decode snapshot; replaying events");
                None
            }
        }
    }

    pub(super) async fn save_snapshot(&self, state: &A, last: &EventEnvelope<A::Event>) {
        let encoded = match state.encode_snapshot() {
            Some(Ok(encoded)) => encoded,
            Some(Err(error)) => {
                let error = crate::PayloadError::from(error);
                tracing::warn!(stream = %last.stream_id, error = &error as &dyn std::error::Error, "cannot encode snapshot");
                return;
            }
            None => return,
        };
        let snapshot = Snapshot {
            stream_id: last.stream_id.clone(),
            version: last.version,
            schema_version: A::SNAPSHOT_VERSION,
            state: encoded,
            taken_at: chrono::Utc::now(),
        };
        // The command has committed; a lost snapshot only costs a longer load later.
        if let Err(error) = self.store.save_snapshot(snapshot).await {
            tracing::warn!(stream = %last.stream_id, error = &error as &dyn std::error::Error, "cannot save snapshot");
        }
    }
}

/// The first item of a load, which must be its start.
fn load_start<E>(
    stream: &StreamId,
    first: Option<Result<LoadItem<E>, ReadError>>,
) -> Result<LoadStart, ReadError> {
    match first {
        Some(Ok(LoadItem::Start(start))) => Ok(start),
        Some(Err(error)) => Err(error),
        Some(Ok(LoadItem::Event { .. })) | None => Err(ReadError::Corrupt {
            detail: format!("the load of `{stream}` did not start with what precedes its events"),
        }),
    }
}
