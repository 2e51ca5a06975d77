use es_core::DomainEvent;

// An encrypted subject could not be read to find the key its data is encrypted under.
#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        #[personal(subject = "fixed:crm", forgotten = "")]
        email: String,
        #[personal(subject = email)]
        name: Option<String>,
    },
}

fn main() {}
