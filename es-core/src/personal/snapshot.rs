//! Snapshots through [`Protected`]: the state of a stream whose events hold personal data
//! is stored encrypted, so that forgetting any of its subjects makes it unusable. (And the
//! store traits `Protected` passes through as they are: checkpoints, dead letters, leases.)
//!
//! # The design
//!
//! A snapshot's state is derived from its stream's events up to its version, so it may
//! hold any of their personal values. When it is saved, the stream's stored events up to
//! that version are read and the key ids in their envelopes collected: the subjects whose
//! data the state may hold. If there are none, the state is stored as it is. Otherwise a
//! fresh random snapshot key encrypts the state's JSON text (AES-256-GCM), and that key is
//! split into XOR shares, one per data key, each share encrypted under its data key. The
//! stored state is then
//!
//! ```json
//! {"es:personal-snapshot": 1, "nonce": "..", "data": "..",
//!  "shares": [{"key": "<key id>", "nonce": "..", "data": ".."}, ...]}
//! ```
//!
//! with the associated data `"es:snapshot\u{1f}{stream}\u{1f}{version}"` throughout, so a
//! snapshot cannot be passed off as another stream's or version's. Every share is needed
//! to rebuild the snapshot key: once any of the subjects is forgotten, its share is gone
//! and so is the state. A snapshot that cannot be opened (a key gone, or damage) loads as
//! absent, and the repository replays the stream's events, redacted as every read is, and
//! saves a new snapshot. One whose subjects are already forgotten when it is saved is not
//! saved at all.
//!
//! Saving costs a read of the stream's stored snapshot and of the events stored since it
//! (not their decoding): the previous snapshot's shares name the keys of the events before
//! it, and one stored as it is says there were none. Loads cost one key fetch per subject.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use aes_gcm::aead::rand_core::RngCore as _;
use aes_gcm::aead::{Aead as _, AeadCore as _, KeyInit as _, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

use futures_core::Stream;

use crate::error::{ReadError, StoreError};
use crate::event::{DomainEvent, RawEvent};
use crate::store::{
    CheckpointStore, DeadLetterStore, EventStore, LeaseStore, LoadItem, ParkedEvent, Snapshot,
    SnapshotStore,
};
use crate::stream::{Position, StreamId, Version};

use super::cipher::key_ids_of;
use super::keys::{DataKey, KeyId, KeyStore};
use super::protected::{Protected, key_failure};

const MARK: &str = "es:personal-snapshot";
const FORMAT: u64 = 1;

fn aad(stream: &StreamId, version: Version) -> String {
    format!("es:snapshot\u{1f}{stream}\u{1f}{version}")
}

/// `plaintext` sealed under `key`: the nonce and the ciphertext, as base64.
fn seal(key: &[u8; 32], plaintext: &[u8], aad: &str) -> Option<(String, String)> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce = Aes256Gcm::generate_nonce(OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .ok()?;
    Some((STANDARD.encode(nonce), STANDARD.encode(sealed)))
}

/// What [`seal`] sealed, if `key` opens it.
fn open(key: &[u8; 32], object: &Map<String, Value>, aad: &str) -> Option<Zeroizing<Vec<u8>>> {
    let nonce = STANDARD.decode(object.get("nonce")?.as_str()?).ok()?;
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    let data = STANDARD.decode(object.get("data")?.as_str()?).ok()?;
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &data,
                aad: aad.as_bytes(),
            },
        )
        .ok()
        .map(Zeroizing::new)
}

impl<S, K> Protected<S, K>
where
    S: EventStore + SnapshotStore,
    K: KeyStore,
{
    /// The key ids in the stored events of `stream` from `from` up to `version`.
    async fn stream_key_ids(
        &self,
        stream: &StreamId,
        from: Version,
        version: Version,
    ) -> Result<BTreeSet<KeyId>, StoreError> {
        let mut ids = BTreeSet::new();
        if from > version {
            return Ok(ids);
        }
        let events = self.store.read_stream::<RawEvent>(stream, from);
        futures_util::pin_mut!(events);
        while let Some(envelope) = events.next().await {
            let envelope = envelope.map_err(|error| {
                StoreError::new("snapshot save", error)
                    .with_context(format!("stream `{stream}` up to version {version}"))
            })?;
            if envelope.version > version {
                break;
            }
            // A malformed envelope holds nothing readable; the reads report it.
            if let Ok(found) = key_ids_of(&envelope.event.event_type, &envelope.event.payload) {
                ids.extend(found);
            }
        }
        Ok(ids)
    }

    /// Where the scan for `snapshot`'s key ids starts, and the ids known before it: what
    /// the stream's stored snapshot says, if it is not past `snapshot` (a sealed one names
    /// every key of the events up to its version in its shares; one stored as it is had
    /// none), so that a save reads only the events since the last one, not the whole
    /// stream again. From the first version without a usable one.
    async fn known_key_ids(&self, snapshot: &Snapshot) -> (Version, BTreeSet<KeyId>) {
        let from_start = (Version::INITIAL.next(), BTreeSet::new());
        let previous = match self.store.load_snapshot(&snapshot.stream_id).await {
            Ok(Some(previous)) if previous.version <= snapshot.version => previous,
            // None, one ahead (a concurrent writer's), or a failing load: scan it all.
            _ => return from_start,
        };
        let after = previous.version.next();
        let sealed = match &previous.state {
            Value::Object(object) if object.contains_key(MARK) => object,
            _ => return (after, BTreeSet::new()),
        };
        let Some(shares) = sealed.get("shares").and_then(Value::as_array) else {
            return from_start;
        };
        let mut ids = BTreeSet::new();
        for share in shares {
            match share
                .get("key")
                .and_then(Value::as_str)
                .map(str::parse::<KeyId>)
            {
                Some(Ok(id)) => {
                    ids.insert(id);
                }
                _ => return from_start,
            }
        }
        (after, ids)
    }

    /// The state sealed under a snapshot key split across `keys`; `None` if it cannot be.
    fn seal_state(snapshot: &Snapshot, keys: &[(KeyId, DataKey)]) -> Option<Value> {
        let aad = aad(&snapshot.stream_id, snapshot.version);
        let mut snapshot_key = Zeroizing::new([0_u8; 32]);
        OsRng.fill_bytes(snapshot_key.as_mut());
        let mut last = Zeroizing::new(*snapshot_key);
        let mut shares = Vec::with_capacity(keys.len());
        let (final_key, others) = keys.split_last()?;
        for (id, key) in others {
            let mut share = Zeroizing::new([0_u8; 32]);
            OsRng.fill_bytes(share.as_mut());
            for (byte, mask) in last.iter_mut().zip(share.iter()) {
                *byte ^= mask;
            }
            shares.push((*id, key, share));
        }
        shares.push((final_key.0, &final_key.1, last));
        let mut sealed_shares = Vec::with_capacity(shares.len());
        for (id, key, share) in &shares {
            let (nonce, data) = seal(key.expose(), share.as_ref(), &aad)?;
            sealed_shares.push(json!({ "key": id.to_string(), "nonce": nonce, "data": data }));
        }
        let text = Zeroizing::new(snapshot.state.to_string());
        let (nonce, data) = seal(&snapshot_key, text.as_bytes(), &aad)?;
        Some(json!({
            MARK: FORMAT,
            "nonce": nonce,
            "data": data,
            "shares": sealed_shares,
        }))
    }

    /// The state of a sealed snapshot, if every key it needs is still there.
    async fn open_state(
        &self,
        snapshot: &Snapshot,
        sealed: &Map<String, Value>,
    ) -> Result<Option<Value>, StoreError> {
        if sealed.get(MARK).and_then(Value::as_u64) != Some(FORMAT) {
            return Ok(None);
        }
        let Some(shares) = sealed.get("shares").and_then(Value::as_array) else {
            return Ok(None);
        };
        let mut ids = Vec::with_capacity(shares.len());
        for share in shares {
            let id = share
                .get("key")
                .and_then(Value::as_str)
                .map(str::parse::<KeyId>);
            match (id, share.as_object()) {
                (Some(Ok(id)), Some(object)) => ids.push((id, object)),
                _ => return Ok(None),
            }
        }
        let found = self
            .found_keys(ids.iter().map(|(id, _)| *id).collect())
            .await
            .map_err(|error| {
                key_failure(
                    "snapshot load",
                    error,
                    format!("stream `{}`", snapshot.stream_id),
                )
            })?;
        let aad = aad(&snapshot.stream_id, snapshot.version);
        let mut snapshot_key = Zeroizing::new([0_u8; 32]);
        for (id, object) in ids {
            let Some(Some(key)) = found.get(&id) else {
                return Ok(None);
            };
            let Some(share) = open(key.expose(), object, &aad) else {
                return Ok(None);
            };
            if share.len() != 32 {
                return Ok(None);
            }
            for (byte, mask) in snapshot_key.iter_mut().zip(share.iter()) {
                *byte ^= mask;
            }
        }
        let Some(text) = open(&snapshot_key, sealed, &aad) else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&text).ok())
    }
}

impl<S, K> SnapshotStore for Protected<S, K>
where
    S: EventStore + SnapshotStore,
    K: KeyStore,
{
    async fn save_snapshot(&self, mut snapshot: Snapshot) -> Result<(), StoreError> {
        let (from, mut ids) = self.known_key_ids(&snapshot).await;
        ids.extend(
            self.stream_key_ids(&snapshot.stream_id, from, snapshot.version)
                .await?,
        );
        if !ids.is_empty() {
            let found = self.found_keys(ids).await.map_err(|error| {
                key_failure(
                    "snapshot save",
                    error,
                    format!("stream `{}`", snapshot.stream_id),
                )
            })?;
            let mut keys = Vec::with_capacity(found.len());
            for (id, key) in found {
                match key {
                    Some(key) => keys.push((id, key)),
                    // A subject forgotten since: the state may hold its data. Not saved;
                    // loads replay the redacted events.
                    None => return Ok(()),
                }
            }
            let Some(sealed) = Self::seal_state(&snapshot, &keys) else {
                return Ok(());
            };
            snapshot.state = sealed;
        }
        self.store.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        match self.store.load_snapshot(stream).await? {
            Some(snapshot) => self.opened_snapshot(snapshot).await,
            None => Ok(None),
        }
    }

    /// The inner store's own load (one round trip on PostgreSQL), its snapshot opened and
    /// each event opened and decoded as every read path does. A snapshot that does not
    /// open (a subject forgotten since, or damage) is left out, and the stream is loaded
    /// again without it, from `after`: the events that follow a start must be those after
    /// its snapshot.
    fn load_events<E: DomainEvent>(
        &self,
        stream: &StreamId,
        after: Version,
        snapshot: bool,
    ) -> impl Stream<Item = Result<LoadItem<E>, ReadError>> + Send + 'static + use<S, K, E>
    where
        Self: EventStore,
    {
        self.learn::<E>();
        let (this, stream) = (self.clone(), stream.clone());
        futures_util::stream::once(async move {
            let mut items = this
                .store
                .load_events::<RawEvent>(&stream, after, snapshot)
                .boxed();
            let mut first = items.next().await;
            if let Some(Ok(LoadItem::Start(start))) = &mut first
                && let Some(sealed) = start.snapshot.take()
            {
                match this.opened_snapshot(sealed).await {
                    Ok(Some(opened)) => start.snapshot = Some(opened),
                    Ok(None) => {
                        items = this
                            .store
                            .load_events::<RawEvent>(&stream, after, false)
                            .boxed();
                        // This start says no more than the first one, without its snapshot;
                        // a failure (a lost connection, say) is passed on as it is.
                        match items.next().await {
                            Some(Ok(LoadItem::Start(_))) => {}
                            Some(Err(error)) => first = Some(Err(error)),
                            Some(Ok(LoadItem::Event { .. })) | None => {
                                first = Some(Err(ReadError::Corrupt {
                                    detail: format!(
                                        "the load of `{stream}` did not start with its start"
                                    ),
                                }));
                            }
                        }
                    }
                    Err(error) => first = Some(Err(error.into())),
                }
            }
            futures_util::stream::iter(first)
                .chain(items)
                .then(move |item| {
                    let (this, stream) = (this.clone(), stream.clone());
                    async move {
                        match item? {
                            LoadItem::Event {
                                version,
                                event_id,
                                position,
                                event,
                            } => Ok(LoadItem::Event {
                                version,
                                event_id,
                                position,
                                event: this
                                    .open_event::<E>(event_id, &stream, version, position, event)
                                    .await?,
                            }),
                            LoadItem::Start(start) => Ok(LoadItem::Start(start)),
                        }
                    }
                })
                // A stream of results ends at its first error, as the stores' own do.
                .scan(false, |failed, item| {
                    let next = (!*failed).then_some(item);
                    *failed |= next.as_ref().is_some_and(Result::is_err);
                    std::future::ready(next)
                })
        })
        .flatten()
    }
}

impl<S, K> Protected<S, K>
where
    S: EventStore + SnapshotStore,
    K: KeyStore,
{
    /// `snapshot` as stored, opened if it is sealed; `None` if it does not open.
    async fn opened_snapshot(
        &self,
        mut snapshot: Snapshot,
    ) -> Result<Option<Snapshot>, StoreError> {
        let sealed = match &snapshot.state {
            Value::Object(object) if object.contains_key(MARK) => object.clone(),
            _ => return Ok(Some(snapshot)),
        };
        match self.open_state(&snapshot, &sealed).await? {
            Some(state) => {
                snapshot.state = state;
                Ok(Some(snapshot))
            }
            None => {
                tracing::debug!(
                    stream = %snapshot.stream_id,
                    version = %snapshot.version,
                    "snapshot not used: a subject of its stream was forgotten, or it is damaged"
                );
                Ok(None)
            }
        }
    }
}

impl<S: CheckpointStore, K: Clone + Send + Sync + 'static> CheckpointStore for Protected<S, K> {
    fn load_checkpoint(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, StoreError>> + Send {
        self.store.load_checkpoint(name)
    }

    fn save_checkpoint(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.save_checkpoint(name, position)
    }

    fn delete_checkpoint(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.delete_checkpoint(name)
    }
}

impl<S: DeadLetterStore, K: Clone + Send + Sync + 'static> DeadLetterStore for Protected<S, K> {
    fn park(&self, parked: ParkedEvent) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.park(parked)
    }

    fn parked(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Vec<ParkedEvent>, StoreError>> + Send {
        self.store.parked(projection)
    }

    fn unpark(
        &self,
        projection: &str,
        event_id: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.unpark(projection, event_id)
    }
}

impl<S: LeaseStore, K: Clone + Send + Sync + 'static> LeaseStore for Protected<S, K> {
    fn acquire_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.store.acquire_lease(name, owner, ttl)
    }

    fn renew_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.store.renew_lease(name, owner, ttl)
    }

    fn release_lease(
        &self,
        name: &str,
        owner: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.release_lease(name, owner)
    }
}
