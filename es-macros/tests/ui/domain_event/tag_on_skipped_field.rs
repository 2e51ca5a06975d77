use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CourseEvent {
    Defined {
        name: String,
        // Read back as `String::default()`, so the event would no longer give its tag.
        #[tag(prefix = "course")]
        #[serde(skip)]
        id: String,
    },
}

fn main() {}
