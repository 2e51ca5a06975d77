use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        #[personal(forgotten = "")]
        name: String,
        #[personal]
        email: Option<String>,
    },
}

fn main() {}
