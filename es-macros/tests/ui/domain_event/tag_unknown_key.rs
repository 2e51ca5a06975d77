use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CourseEvent {
    Defined {
        #[tag(prefx = "course")]
        id: String,
    },
    Renamed {
        #[tag(key = "course")]
        id: String,
    },
}

fn main() {}
