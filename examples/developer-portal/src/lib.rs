//! A developer portal on es-rs.
//!
//! The portal offers API products (`ApiProductOffered`) and withdraws them
//! (`ApiProductWithdrawn`) once no application uses them. Developers register
//! applications (`ApplicationCreated`), give them access to offered API products
//! (`ApiProductAdded`, `ApiProductRemoved`), hand them to other owners
//! (`OwnerChanged`), issue credential keys that expire (`CredentialsGenerated`,
//! `CredentialsExpired`) and delete them (`ApplicationDeleted`). When an application stops
//! using a product, a flow asks its owner why: a survey is added (`SurveyAdded`), sent
//! (`SurveySent`) and answered (`SurveyFeedbackRecorded`).
//!
//! - [`application`]: the application aggregate and its rules;
//! - [`products`]: the API product catalog, and the decisions that keep a rule across it
//!   and the applications: a product is withdrawn only when no application uses it, and
//!   added only while it is offered;
//! - [`services`]: the clock and key generator its handler uses, real or fixed;
//! - [`survey`]: the survey aggregate and its rules;
//! - [`catalog`]: a read model listing live applications;
//! - [`flows`]: the process managers from product removal to sent survey;
//! - [`scenario`]: the realistic run the `developer-portal` binary prints;
//! - [`channels`]: the AsyncAPI document of the events it shares (`developer-portal asyncapi`);
//! - [`shared`]: its log relayed to NATS JetStream, and the survey service that consumes it
//!   (`survey-service`, a second binary).

pub mod application;
pub mod catalog;
pub mod channels;
pub mod flows;
pub mod products;
pub mod scenario;
pub mod services;
pub mod shared;
pub mod survey;

pub use application::{
    Application, ApplicationCommand, ApplicationError, ApplicationEvent, ApplicationStatus,
    Credential, MAX_VALIDITY_DAYS, application_tag, tagged_context,
};
pub use catalog::{ApplicationCatalog, ApplicationSummary};
pub use flows::{SURVEY_CHANNEL, SendNewSurveys, SurveyOnProductRemoval, survey_id};
pub use products::{
    AddProductToApplication, OfferProduct, ProductError, ProductEvent,
    RemoveProductFromApplication, WithdrawProduct,
};
pub use services::{
    Clock, KeyGenerator, ManualClock, PortalServices, RandomKeys, SequentialKeys, SystemClock,
};
pub use survey::{Feedback, Survey, SurveyCommand, SurveyError, SurveyEvent, SurveyStatus};
