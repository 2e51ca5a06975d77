use es_core::DomainEvent;

mod cents {
    pub fn serialize<S: serde::Serializer>(cents: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&cents.to_string())
    }
}

// `with` belongs on the field, where the payload helper honours it.
#[derive(Debug, Clone, DomainEvent)]
enum PaymentEvent {
    #[serde(serialize_with = "cents::serialize")]
    Refunded(i64),
}

fn main() {}
