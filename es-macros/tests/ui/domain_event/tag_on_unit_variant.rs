use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CourseEvent {
    #[tag]
    Closed,
}

fn main() {}
