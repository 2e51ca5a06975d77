// A payload field whose type has no JSON Schema: the error is at the field's type, and
// the fix is to derive `schemars::JsonSchema` on it or use `#[schemars(with = "...")]`.
use es_core::{DomainEvent, EventSchema};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Money(i64);

#[derive(Debug, Clone, DomainEvent, EventSchema)]
enum AccountEvent {
    Deposited { amount: Money },
}

fn main() {}
