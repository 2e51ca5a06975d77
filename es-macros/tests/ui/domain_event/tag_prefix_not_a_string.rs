use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CourseEvent {
    Defined {
        #[tag(prefix = course)]
        id: String,
    },
    Renamed {
        #[tag = "course"]
        id: String,
    },
}

fn main() {}
