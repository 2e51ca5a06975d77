//! The whole store conformance suite, on the in-memory store.

es_testkit::conformance_tests!(async { es_memory::MemoryEventStore::new() });

/// The store's streams can be shared across threads, as the values they stand for are:
/// a stream read, a subscription, a load.
#[test]
fn its_streams_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    use es_core::{EventFilter, EventStore as _, Position, RawEvent, SnapshotStore as _, Version};
    let store = es_memory::MemoryEventStore::new();
    let stream = es_core::StreamId::new("account", "1").unwrap();
    send_sync(&store.read_stream::<RawEvent>(&stream, Version::INITIAL));
    send_sync(&store.read_all::<RawEvent>(Position::START, EventFilter::all()));
    send_sync(&store.subscribe::<RawEvent>(Position::START, EventFilter::all()));
    send_sync(&store.load_events::<RawEvent>(&stream, Version::INITIAL, true));
}
