//! The store contract again, on the strict in-memory store (every event read back through
//! its encoding). The engine cases check es-core rather than the store, and run once, on
//! the default in-memory store (`conformance.rs`).

es_testkit::store_contract!(async { es_memory::MemoryEventStore::strict() });
