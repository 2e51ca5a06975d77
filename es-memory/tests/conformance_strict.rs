//! The whole store conformance suite, on the strict in-memory store (every event read back
//! through its encoding).

es_testkit::conformance_tests!(async { es_memory::MemoryEventStore::strict() });
