use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CourseEvent {
    Defined {
        #[tag(prefix = "course", prefix = "class")]
        id: String,
    },
}

fn main() {}
