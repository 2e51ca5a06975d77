use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[event(name = "Account Opened")]
    Opened { owner: String },
}

fn main() {}
