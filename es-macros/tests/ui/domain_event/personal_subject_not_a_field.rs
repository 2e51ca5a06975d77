use es_core::DomainEvent;

// The subject is read from the payload; a field that is not there has no value.
#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        #[personal(subject = customer)]
        name: Option<String>,
    },
}

fn main() {}
