use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[event(name = "AccountOpened")]
    #[event(version = 2, name = "Opened")]
    Opened { owner: String },
}

fn main() {}
