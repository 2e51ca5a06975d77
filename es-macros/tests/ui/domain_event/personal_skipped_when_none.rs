use es_core::DomainEvent;

// Left out of the payload when `None`: a protecting store refuses a payload without a
// declared personal field (its way of telling a payload of another shape), so this is
// refused here; a `None` personal field is stored as `null` instead.
#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        #[personal(subject = customer_id)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone: Option<String>,
    },
}

fn main() {}
