//! The portal's events shared through NATS JetStream: [`relay`] publishes the portal's log,
//! and [`survey_service`] is a second service that receives `ApiProductRemoved` from the
//! applications channel and runs the survey flow on a store of its own. Two services, one
//! channel, as the AsyncAPI document ([`crate::channels`]) describes them.

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::pull;
use es_asyncapi::Channel;
use es_core::{ProcessManagerProjection, ProjectionRunner, Repository, Store};
use es_nats::{Consumer, Relay};

use crate::flows::SurveyOnProductRemoval;
use crate::{Application, Survey};

/// The durable consumer of the survey service.
pub const SURVEY_CONSUMER: &str = "survey-service";

/// Where on NATS the portal's events go: a JetStream stream, and a prefix before each
/// channel's address (JetStream lets no two streams take the same subjects, so two
/// deployments on one server, such as a test beside the example, need prefixes of their own).
#[derive(Debug, Clone)]
pub struct Topology {
    /// The JetStream stream.
    pub stream: String,
    /// Put before each channel's address, such as `staging.`; empty by default.
    pub prefix: String,
}

impl Default for Topology {
    /// Stream `DEVELOPER_PORTAL`, the channels' own addresses.
    fn default() -> Self {
        Self {
            stream: "DEVELOPER_PORTAL".to_owned(),
            prefix: String::new(),
        }
    }
}

impl Topology {
    fn channel<A>(&self) -> Channel
    where
        A: es_core::AggregateType,
        A::Event: es_core::EventSchema,
    {
        let channel = Channel::for_aggregate::<A>();
        let address = format!("{}{}", self.prefix, channel.address());
        channel.with_address(address)
    }
}

/// Relays what the portal's log holds now to the topology's stream (applications and
/// surveys, at their channels' addresses), and returns how many events went out.
///
/// # Errors
///
/// If the relay cannot be set up or an event cannot be relayed.
pub async fn relay<S: Store>(
    store: &S,
    jetstream: &Context,
    topology: &Topology,
) -> Result<u64, crate::scenario::Error> {
    let relay = Relay::builder(store.clone(), jetstream.clone())
        .stream(&topology.stream)
        .channel(&topology.channel::<Application>())
        .channel(&topology.channel::<Survey>())
        .build()
        .await?;
    Ok(ProjectionRunner::new(store.clone(), relay)
        .catch_up()
        .await?)
}

/// The survey service: takes the product removals relayed to the topology's stream that it has not
/// handled yet and adds a survey for each, in its own `store`. Returns how many removals it
/// handled. Its checkpoint lives in its own store too, so a removal it has seen is never
/// surveyed twice, even when JetStream delivers it again.
///
/// # Errors
///
/// If JetStream or the survey store fails.
pub async fn survey_service<S: Store>(
    store: &S,
    jetstream: &Context,
    topology: &Topology,
) -> Result<u64, crate::scenario::Error> {
    let channel = topology.channel::<Application>();
    let address = es_asyncapi::Address::parse(channel.name(), channel.address())?;
    let consumer = jetstream
        .get_stream(&topology.stream)
        .await?
        .get_or_create_consumer(
            SURVEY_CONSUMER,
            pull::Config {
                durable_name: Some(SURVEY_CONSUMER.to_owned()),
                filter_subject: address.filter(),
                // What `Consumer` needs to skip by position safely: explicit acks (the pull
                // default) and a bounded number of unacknowledged messages.
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                max_ack_pending: 256,
                ..Default::default()
            },
        )
        .await?;
    let flow =
        ProcessManagerProjection::new(SurveyOnProductRemoval, Repository::new(store.clone()));
    let mut consumer = Consumer::new(consumer, flow, store.clone());
    Ok(consumer.catch_up().await?)
}
