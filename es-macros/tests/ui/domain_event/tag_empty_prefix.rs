use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CourseEvent {
    Defined {
        #[tag(prefix = "")]
        id: String,
    },
}

fn main() {}
