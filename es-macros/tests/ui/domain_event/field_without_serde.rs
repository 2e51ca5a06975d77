use es_core::DomainEvent;

#[derive(Debug, Clone)]
struct Money {
    cents: i64,
}

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    Deposited { amount: Money },
}

fn main() {}
