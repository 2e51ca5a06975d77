use es_core::DomainEvent;

// Tag mistakes are reported together with the derive's other mistakes, each at its tokens.
#[derive(Debug, Clone, DomainEvent)]
enum CourseEvent {
    #[event(nmae = "CourseDefined")]
    Defined {
        #[tag(prefix = "")]
        id: String,
        #[tag]
        #[serde(skip_deserializing)]
        owner: String,
    },
    Renamed(#[tag] String),
    #[tag]
    Closed,
}

fn main() {}
