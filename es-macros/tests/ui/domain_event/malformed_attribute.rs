use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[event = "AccountOpened"]
    Opened { owner: String },
}

fn main() {}
