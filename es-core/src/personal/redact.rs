//! [`redact`]: an event as a reader sees it once some subjects are forgotten, without a
//! store or keys (what the test harness shows an aggregate or a projection).

use crate::event::{DecodeError, DomainEvent};
use crate::payload::PayloadError;

use super::cipher::redact_fields;
use super::keys::Subject;

/// `event` as a reader of the store sees it once the subjects `is_forgotten` says are
/// forgotten: each personal field of such a subject holds its declared replacement
/// ([`Forgotten::value`](super::Forgotten::value)), the rest is unchanged.
///
/// It encodes the event, replaces those fields and decodes it again, as a read through
/// [`Protected`](super::Protected) would.
///
/// # Errors
///
/// [`DecodeError::InvalidPayload`] if the event's subject fields cannot be told (missing,
/// null, not a valid subject), it cannot be encoded, or the replaced payload does not
/// decode (a replacement that does not fit its field's type).
pub fn redact<E: DomainEvent>(
    event: &E,
    is_forgotten: impl Fn(&Subject) -> bool,
) -> Result<E, DecodeError> {
    let event_type = event.event_type();
    let version = event.schema_version();
    let invalid = |source: PayloadError| DecodeError::InvalidPayload {
        event_type: event_type.to_owned(),
        version,
        source,
    };
    let fields = E::personal_fields(event_type);
    if fields.is_empty() {
        return Ok(event.clone());
    }
    let mut payload = event
        .encode()
        .map_err(|_| invalid(message("the event does not encode".to_owned())))?;
    redact_fields(event_type, fields, &mut payload, &is_forgotten).map_err(|error| {
        invalid(message(format!(
            "personal field {} has no usable subject",
            error.field().unwrap_or("?")
        )))
    })?;
    E::decode(event_type, version, payload)
}

/// A payload error that says `text` (which holds no stored value).
fn message(text: String) -> PayloadError {
    PayloadError::from(<serde_json::Error as serde::de::Error>::custom(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::personal::fixture::Registered;

    #[test]
    fn only_the_forgotten_subjects_fields_are_replaced() {
        let ada = Registered::of("c1", "Ada");
        let forgotten = |subject: &Subject| subject.as_str() == "c1";
        assert_eq!(
            redact(&ada, forgotten).unwrap(),
            Registered::forgotten("c1")
        );
        let bob = Registered::of("c2", "Bob");
        assert_eq!(redact(&bob, forgotten).unwrap(), bob);
    }

    #[test]
    fn an_event_without_a_subject_is_an_error_without_its_values() {
        let nobody = Registered::of("", "Ada");
        let error = redact(&nobody, |_| true).unwrap_err();
        assert!(matches!(error, DecodeError::InvalidPayload { .. }));
        let text = format!("{error} {:?}", std::error::Error::source(&error));
        assert!(text.contains("name") && !text.contains("Ada"), "{text}");
    }
}
