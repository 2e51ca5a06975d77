//! The survey flows: process managers that turn events into survey commands.
//!
//! - [`SurveyOnProductRemoval`]: an application stops using an API product
//!   (`ApiProductRemoved`) → a survey asks its owner why (`AddSurvey`);
//! - [`SendNewSurveys`]: a survey is requested (`SurveyAdded`) → it goes out (`SendSurvey`).
//!
//! Run each through [`es_core::ProcessManagerProjection`] and a
//! [`ProjectionRunner`](es_core::ProjectionRunner): their checkpoints live in the store, and
//! each command's id derives from the event that caused it, so a flow that sees an event
//! again (after a crash, in a rebuild) issues its command once.

use std::convert::Infallible;

use es_core::{CommandFor, EventEnvelope, EventFilter, ProcessManager, Version};

use crate::application::{Application, ApplicationEvent};
use crate::survey::{Survey, SurveyCommand, SurveyEvent};

/// The channel new surveys are sent by.
pub const SURVEY_CHANNEL: &str = "email";

/// The id of the survey about the removal of `product` from `application`, recorded at
/// `version` of the application's stream: one survey per removal, so a product added and
/// removed again is asked about again.
pub fn survey_id(application: &str, product: &str, version: Version) -> String {
    format!("{application}/{product}/{version}")
}

/// When an application stops using an API product, asks its owner why.
#[derive(Debug, Clone, Copy, Default)]
pub struct SurveyOnProductRemoval;

impl SurveyOnProductRemoval {
    /// Its name: the key of its checkpoint, and part of every command id it derives.
    pub const NAME: &'static str = "survey-on-product-removal";
}

impl ProcessManager for SurveyOnProductRemoval {
    type Event = ApplicationEvent;
    type Target = Survey;
    type Error = Infallible;

    fn name(&self) -> &str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<Application>().with_event_types(["ApiProductRemoved"])
    }

    async fn react(
        &self,
        envelope: &EventEnvelope<ApplicationEvent>,
        _: &es_core::Reads<'_>,
    ) -> Result<Vec<CommandFor<Survey>>, Infallible> {
        let ApplicationEvent::ApiProductRemoved { product, owner } = &envelope.event else {
            return Ok(Vec::new());
        };
        let application = envelope.stream_id.id();
        Ok(vec![(
            survey_id(application, product, envelope.version),
            SurveyCommand::Add {
                application: application.to_owned(),
                product: product.clone(),
                recipient: owner.clone(),
            },
        )])
    }
}

/// Sends every survey as soon as it is requested.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendNewSurveys;

impl SendNewSurveys {
    /// Its name: the key of its checkpoint, and part of every command id it derives.
    pub const NAME: &'static str = "send-new-surveys";
}

impl ProcessManager for SendNewSurveys {
    type Event = SurveyEvent;
    type Target = Survey;
    type Error = Infallible;

    fn name(&self) -> &str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<Survey>().with_event_types(["SurveyAdded"])
    }

    async fn react(
        &self,
        envelope: &EventEnvelope<SurveyEvent>,
        _: &es_core::Reads<'_>,
    ) -> Result<Vec<CommandFor<Survey>>, Infallible> {
        Ok(match envelope.event {
            SurveyEvent::Added { .. } => vec![(
                envelope.stream_id.id().to_owned(),
                SurveyCommand::Send {
                    channel: SURVEY_CHANNEL.to_owned(),
                },
            )],
            SurveyEvent::Sent { .. } | SurveyEvent::FeedbackRecorded { .. } => Vec::new(),
        })
    }
}
