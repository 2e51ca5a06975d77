use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CourseEvent {
    Defined {
        #[tag]
        #[tag(prefix = "course")]
        id: String,
    },
}

fn main() {}
