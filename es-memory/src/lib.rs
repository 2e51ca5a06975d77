//! An in-memory event store for es-rs.
//!
//! [`MemoryEventStore`] implements the whole `es-core` store contract, the five traits
//! [`EventStore`], [`SnapshotStore`], [`CheckpointStore`], [`DeadLetterStore`] and
//! [`LeaseStore`] (together, [`Store`]), with the semantics of the PostgreSQL store:
//! atomic batches, expected-version checks, idempotent event ids, a global log with
//! positions, and live subscriptions. The `es-testkit` conformance suite proves it.
//!
//! Events are kept as typed values, so reading them back with the type that wrote them
//! costs a clone, not a decode; reading them as another type (such as
//! [`RawEvent`](es_core::RawEvent)) goes through their JSON encoding, as a real store would.
//! Nothing is persisted: the data lives as long as the last clone of the store.
//!
//! ```
//! use es_core::{EventStore, ExpectedVersion, NewEvent, RawEvent, StreamId, Version};
//! use es_memory::MemoryEventStore;
//! use futures_util::TryStreamExt;
//! use serde_json::json;
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let store = MemoryEventStore::new();
//! let stream = StreamId::new("order", "1")?;
//! let placed = RawEvent::new("OrderPlaced", 1, json!({ "total": 5 }));
//!
//! store.append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new(placed)]).await?;
//! let events: Vec<_> = store.read_stream::<RawEvent>(&stream, Version::INITIAL).try_collect().await?;
//! assert_eq!(events[0].version, Version::new(1));
//!
//! // A second writer that expects no stream loses.
//! let late = store.append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new(RawEvent::new("OrderPlaced", 1, json!({})))]).await;
//! assert!(late.unwrap_err().is_conflict());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod record;
mod store;

pub use store::MemoryEventStore;

#[doc(no_inline)]
pub use es_core::{CheckpointStore, DeadLetterStore, EventStore, LeaseStore, SnapshotStore, Store};
