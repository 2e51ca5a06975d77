use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
#[event(name = "Account")]
enum AccountEvent {
    Opened { owner: String },
}

fn main() {}
