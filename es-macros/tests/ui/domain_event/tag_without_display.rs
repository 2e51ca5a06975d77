use es_core::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CourseId(u32);

#[derive(Debug, Clone, DomainEvent)]
enum CourseEvent {
    Defined {
        #[tag(prefix = "course")]
        id: CourseId,
    },
    Moved {
        #[tag]
        to: Option<CourseId>,
    },
}

fn main() {}
