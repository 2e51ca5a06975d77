//! The portal's event channels, as an AsyncAPI 3.0 document.
//!
//! The portal owns applications and surveys and sends their events; its survey flow
//! receives the applications channel's `ApiProductRemoved`, the one message it reacts to.
//! Two channels, and one operation that receives a single message of one of them: the shape a
//! consuming service declares. `cargo run -p developer-portal -- asyncapi` prints it as YAML
//! (`--json` for JSON); `asyncapi.yaml` beside this crate's manifest is the committed copy,
//! which a test keeps equal to what the code builds.

use es_asyncapi::{AsyncApi, AsyncApiError, Channel, Document, Operation};

use crate::{Application, Survey};

/// The channel of application events.
pub const APPLICATIONS: &str = "EventSourceApplications";
/// The channel of survey events.
pub const SURVEYS: &str = "EventSourceSurveys";

/// The developer portal's AsyncAPI document.
///
/// # Errors
///
/// Never for this domain; an [`AsyncApiError`] would name an event type or address that
/// AsyncAPI cannot hold.
pub fn asyncapi() -> Result<Document, AsyncApiError> {
    AsyncApi::new("Developer portal", "1.0.0")
        .description(
            "Registers developers' applications, their API products and credentials, and asks \
             owners why they stopped using a product.",
        )
        .server("nats", "localhost:4222", "nats")
        .channel(Channel::for_aggregate::<Application>().with_title("Application events"))
        .channel(Channel::for_aggregate::<Survey>().with_title("Survey events"))
        .operation(
            Operation::send("publishApplicationEvents", APPLICATIONS)
                .summary("The portal publishes each application event once it is stored."),
        )
        .operation(
            Operation::send("publishSurveyEvents", SURVEYS)
                .summary("The portal publishes each survey event once it is stored."),
        )
        .operation(
            Operation::receive("surveyOnProductRemoval", APPLICATIONS)
                .messages(["ApiProductRemoved"])
                .summary(
                    "The survey flow asks the owner why, when an application drops a product.",
                ),
        )
        .build()
}
