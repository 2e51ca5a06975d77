use es_core::DomainEvent;

// Personal mistakes are reported together with the derive's other mistakes, each at its
// tokens.
#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    #[event(nmae = "CustomerRegistered")]
    Registered {
        customer_id: String,
        #[personal(subject = customer)]
        name: String,
        #[personal(subject = customer_id)]
        #[serde(skip_serializing)]
        phone: Option<String>,
        #[personal(subject = "crm", forgotten = Default)]
        note: String,
    },
    Renamed(#[personal(subject = "fixed:crm")] Option<String>),
    #[personal(subject = "fixed:crm")]
    Closed,
}

fn main() {}
