use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CourseEvent {
    Defined {
        // The key is the text before the first `:`, so this would tag with `school`.
        #[tag(prefix = "school:course")]
        id: String,
    },
}

fn main() {}
