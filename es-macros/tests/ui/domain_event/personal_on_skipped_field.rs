use es_core::DomainEvent;

// A field that is not stored has nothing to encrypt, and reads back as its default.
#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        #[personal(subject = customer_id)]
        #[serde(skip)]
        name: Option<String>,
    },
}

fn main() {}
