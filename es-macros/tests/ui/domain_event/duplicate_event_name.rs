use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    Deposited { amount: u64 },
    #[event(name = "Deposited", version = 2)]
    DepositedV2 { amount: u64, currency: String },
}

fn main() {}
