//! The whole store conformance suite, unchanged, on the in-memory store behind
//! `es_core::personal::Protected`: the decorator that encrypts personal fields must keep
//! every behaviour of the store it wraps (events without personal fields pass through it
//! as they are, and what has personal fields reads back identically).

use es_core::personal::{MemoryKeyStore, Protected};

es_testkit::conformance_tests!(async {
    Protected::new(es_memory::MemoryEventStore::new(), MemoryKeyStore::new())
});

es_testkit::personal_contract!(async {
    Protected::new(es_memory::MemoryEventStore::new(), MemoryKeyStore::new())
});
