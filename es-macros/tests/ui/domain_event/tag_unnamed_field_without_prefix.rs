use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CourseEvent {
    // An unnamed field has no name to make the key of: `prefix` is required.
    Renamed(#[tag] String),
}

fn main() {}
