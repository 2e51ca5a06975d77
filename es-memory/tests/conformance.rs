//! The whole store conformance suite, on the in-memory store.

es_testkit::conformance_tests!(async { es_memory::MemoryEventStore::new() });
