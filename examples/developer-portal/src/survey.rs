//! The survey aggregate: a question to an application's owner about an API product it
//! stopped using, sent once and answered once.

use es_core::{Aggregate, DomainEvent, EventSchema};
use serde::{Deserialize, Serialize};

/// The ratings a respondent may give.
pub const RATINGS: std::ops::RangeInclusive<u8> = 1..=5;

/// What happens to a survey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent, EventSchema)]
pub enum SurveyEvent {
    /// A survey was requested.
    #[event(name = "SurveyAdded")]
    Added {
        /// The application (its id) that stopped using the product.
        application: String,
        /// The product.
        product: String,
        /// Who is asked.
        recipient: String,
    },
    /// The survey went out.
    #[event(name = "SurveySent")]
    Sent {
        /// How (`email`, ...).
        channel: String,
    },
    /// The recipient answered.
    #[event(name = "SurveyFeedbackRecorded")]
    FeedbackRecorded {
        /// From 1 (poor) to 5 (great).
        rating: u8,
        /// What they wrote, possibly nothing.
        comment: String,
    },
}

/// What can be asked of a survey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SurveyCommand {
    /// Request a survey.
    Add {
        /// The application (its id) that stopped using the product.
        application: String,
        /// The product.
        product: String,
        /// Who is asked.
        recipient: String,
    },
    /// Send the survey.
    Send {
        /// How (`email`, ...).
        channel: String,
    },
    /// Record the recipient's answer.
    RecordFeedback {
        /// From 1 (poor) to 5 (great).
        rating: u8,
        /// What they wrote, possibly nothing.
        comment: String,
    },
}

/// Why a survey refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SurveyError {
    /// The survey exists already.
    #[error("the survey has already been added")]
    AlreadyAdded,
    /// There is no such survey.
    #[error("the survey has not been added")]
    NotAdded,
    /// A survey is about an application and a product, and goes to someone.
    #[error("a survey needs an application, a product and a recipient")]
    Incomplete,
    /// A survey goes out by some channel.
    #[error("a survey needs a channel to be sent by")]
    ChannelRequired,
    /// The survey went out already.
    #[error("the survey has already been sent by {channel}")]
    AlreadySent {
        /// How it was sent.
        channel: String,
    },
    /// Feedback comes only to a survey that went out.
    #[error("the survey has not been sent")]
    NotSent,
    /// The survey has its answer.
    #[error("feedback has already been recorded")]
    FeedbackAlreadyRecorded,
    /// Ratings go from 1 to 5.
    #[error("a rating goes from 1 to 5, not {rating}")]
    InvalidRating {
        /// The given rating.
        rating: u8,
    },
}

/// Where a survey is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SurveyStatus {
    /// Not added yet.
    #[default]
    Draft,
    /// Requested, not sent.
    Added,
    /// Sent, waiting for an answer.
    Sent,
    /// Answered.
    Answered,
}

/// The recipient's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// From 1 to 5.
    pub rating: u8,
    /// What they wrote.
    pub comment: String,
}

/// A survey, as its events made it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, es_core::AggregateType)]
#[aggregate(name = "survey", command = SurveyCommand, event = SurveyEvent, error = SurveyError)]
pub struct Survey {
    /// Where it is.
    pub status: SurveyStatus,
    /// The application it is about.
    pub application: String,
    /// The product it is about.
    pub product: String,
    /// Who is asked.
    pub recipient: String,
    /// How it was sent.
    pub channel: Option<String>,
    /// The answer.
    pub feedback: Option<Feedback>,
}

impl Aggregate for Survey {
    async fn handle(
        &self,
        command: SurveyCommand,
        _services: &(),
    ) -> Result<Vec<SurveyEvent>, SurveyError> {
        use SurveyStatus::{Added, Answered, Draft, Sent};
        match (self.status, command) {
            (
                Draft,
                SurveyCommand::Add {
                    application,
                    product,
                    recipient,
                },
            ) => {
                if [&application, &product, &recipient]
                    .iter()
                    .any(|field| field.trim().is_empty())
                {
                    return Err(SurveyError::Incomplete);
                }
                Ok(vec![SurveyEvent::Added {
                    application,
                    product,
                    recipient,
                }])
            }
            (_, SurveyCommand::Add { .. }) => Err(SurveyError::AlreadyAdded),
            (Draft, _) => Err(SurveyError::NotAdded),

            (Added, SurveyCommand::Send { channel }) => {
                if channel.trim().is_empty() {
                    return Err(SurveyError::ChannelRequired);
                }
                Ok(vec![SurveyEvent::Sent { channel }])
            }
            (Sent | Answered, SurveyCommand::Send { .. }) => Err(SurveyError::AlreadySent {
                channel: self.channel.clone().unwrap_or_default(),
            }),

            (Added, SurveyCommand::RecordFeedback { .. }) => Err(SurveyError::NotSent),
            (Sent, SurveyCommand::RecordFeedback { rating, comment }) => {
                if !RATINGS.contains(&rating) {
                    return Err(SurveyError::InvalidRating { rating });
                }
                Ok(vec![SurveyEvent::FeedbackRecorded { rating, comment }])
            }
            (Answered, SurveyCommand::RecordFeedback { .. }) => {
                Err(SurveyError::FeedbackAlreadyRecorded)
            }
        }
    }

    fn apply(&mut self, event: &SurveyEvent) {
        match event {
            SurveyEvent::Added {
                application,
                product,
                recipient,
            } => {
                self.status = SurveyStatus::Added;
                self.application.clone_from(application);
                self.product.clone_from(product);
                self.recipient.clone_from(recipient);
            }
            SurveyEvent::Sent { channel } => {
                self.status = SurveyStatus::Sent;
                self.channel = Some(channel.clone());
            }
            SurveyEvent::FeedbackRecorded { rating, comment } => {
                self.status = SurveyStatus::Answered;
                self.feedback = Some(Feedback {
                    rating: *rating,
                    comment: comment.clone(),
                });
            }
        }
    }
}
