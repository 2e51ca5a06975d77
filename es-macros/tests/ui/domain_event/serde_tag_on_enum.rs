use es_core::DomainEvent;

// Payloads never carry a tag: the store keeps the event type beside them.
#[derive(Debug, Clone, DomainEvent)]
#[serde(tag = "type")]
enum AccountEvent {
    Opened { owner: String },
}

fn main() {}
