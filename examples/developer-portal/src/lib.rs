//! A developer portal on es-rs.
//!
//! Developers register applications (`ApplicationCreated`), give them access to API
//! products (`ApiProductAdded`, `ApiProductRemoved`), hand them to other owners
//! (`OwnerChanged`), issue credential keys that expire (`CredentialsGenerated`,
//! `CredentialsExpired`) and delete them (`ApplicationDeleted`). When an application stops
//! using a product, its owner is asked why: a survey is added (`SurveyAdded`), sent
//! (`SurveySent`) and answered (`SurveyFeedbackRecorded`).
//!
//! - [`application`]: the application aggregate and its rules;
//! - [`services`]: the clock and key generator its handler uses, real or fixed;
//! - [`survey`]: the survey aggregate and its rules.

pub mod application;
pub mod services;
pub mod survey;

pub use application::{
    Application, ApplicationCommand, ApplicationError, ApplicationEvent, ApplicationStatus,
    Credential, MAX_VALIDITY_DAYS,
};
pub use services::{
    Clock, KeyGenerator, ManualClock, PortalServices, RandomKeys, SequentialKeys, SystemClock,
};
pub use survey::{Feedback, Survey, SurveyCommand, SurveyError, SurveyEvent, SurveyStatus};
