use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[event(nmae = "AccountOpened")]
    Opened { owner: String },
}

fn main() {}
