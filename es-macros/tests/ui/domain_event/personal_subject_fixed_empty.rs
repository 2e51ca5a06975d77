use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        #[personal(subject = "fixed:")]
        name: Option<String>,
    },
}

fn main() {}
