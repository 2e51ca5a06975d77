use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[event(name = AccountOpened)]
    Opened { owner: String },
}

fn main() {}
