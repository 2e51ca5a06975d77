use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    Opened {
        #[event(name = "holder")]
        owner: String,
    },
}

fn main() {}
