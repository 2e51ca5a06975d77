//! A realistic run of the portal on any store, written as a readable report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{SubsecRound as _, TimeDelta, Utc};
use es_core::{
    CommandError, Decider, DecisionError, DomainEvent, EventEnvelope, EventStore,
    ProcessManagerProjection, ProjectionRunner, Repository, SnapshotPolicy, SnapshotStore, Store,
    Version,
};
use futures_util::TryStreamExt as _;

use crate::application::{
    Application, ApplicationCommand, ApplicationError, ApplicationEvent, tagged_context,
};
use crate::catalog::ApplicationCatalog;
use crate::flows::{SendNewSurveys, SurveyOnProductRemoval, survey_id};
use crate::products::{
    AddProductToApplication, OfferProduct, ProductError, RemoveProductFromApplication,
    WithdrawProduct,
};
use crate::services::{ManualClock, PortalServices, RandomKeys};
use crate::survey::{Survey, SurveyCommand, SurveyEvent, SurveyStatus};

/// A failure of the scenario itself (not a rejected command, which it expects).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long the scenario waits for its writes to reach the global log's readers. On
/// PostgreSQL an event is delivered only once every transaction that began before it has
/// ended (so that none is ever skipped): other sessions' open transactions hold it back.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the scenario did.
#[derive(Debug)]
pub struct Report {
    /// The application ids it used (unique per run, so runs on a persistent store do not
    /// clash).
    pub application_ids: Vec<String>,
    /// Each application's recorded events, by application id, in stream order.
    pub histories: Vec<(String, Vec<EventEnvelope<ApplicationEvent>>)>,
    /// Each application's state as rebuilt from its events.
    pub states: Vec<(String, Application)>,
    /// The application commands that were rejected, with why (an add or removal of a
    /// product the application's own rules refuse too).
    pub rejections: Vec<(String, ApplicationCommand, ApplicationError)>,
    /// The product decisions (offers, withdrawals, and adds the catalog refused), in
    /// order: what was asked, and how many events it recorded or why it was refused.
    pub product_decisions: Vec<(String, Result<usize, ProductError>)>,
    /// The catalog built from the whole log (on a persistent store, earlier runs'
    /// applications too).
    pub catalog: ApplicationCatalog,
    /// The surveys the flows added for this run's removals: survey id and its events.
    pub surveys: Vec<(String, Vec<EventEnvelope<SurveyEvent>>)>,
    /// Each survey's state.
    pub survey_states: Vec<(String, Survey)>,
    /// How many product removals the survey flow handled in this run (from its
    /// checkpoint on).
    pub removals_handled: u64,
    /// How many new surveys the sending flow handled in this run.
    pub surveys_handled: u64,
    /// The report as text.
    pub text: String,
}

/// Plays the scenario on `store`: the catalog offers six API products; four applications
/// of four owners gain and lose them and credentials, one changes hands, one is deleted,
/// and three commands are rejected; a product is withdrawn once no application uses it,
/// after being refused while one did, and adds of products not offered are refused; then the catalog and the survey flows catch up with the log, and one owner
/// answers a survey.
///
/// The application's clock is a [`ManualClock`] that starts now and is moved forward 10,
/// then 21 days, so that credentials come due; keys are random.
///
/// # Errors
///
/// Fails if the store fails, a flow fails, or the log does not show the scenario's events
/// within 30 s; rejected commands are part of the scenario and recorded in the report.
pub async fn run<S>(store: S) -> Result<Report, Error>
where
    S: Store,
{
    let run = uuid::Uuid::now_v7().simple().to_string();
    let run = &run[run.len() - 6..];
    let clock = ManualClock::at(Utc::now().trunc_subsecs(0));
    let services = PortalServices::new(clock.clone(), RandomKeys);
    let mut portal = Portal {
        apps: Repository::<Application, _>::with_services(store.clone(), services)
            .with_snapshot_policy(SnapshotPolicy::every(5)),
        decider: Decider::new(store.clone()),
        rejections: Vec::new(),
        product_decisions: Vec::new(),
        written: BTreeMap::new(),
        surveys: Vec::new(),
    };
    let [weather, checkout, fleet, sandbox] =
        ["weather", "checkout", "fleet", "sandbox"].map(|app| format!("{run}-{app}"));

    // Day 0: the catalog offers its products (on a persistent store, offered already by an
    // earlier run, or offered again after its withdrawal), and four developers register
    // applications.
    for (product, name) in [
        ("forecast-api", "Forecasts"),
        ("maps-api", "Maps"),
        ("payments-api", "Payments"),
        ("fraud-check-api", "Fraud check"),
        ("geocoding-api", "Geocoding"),
        ("sms-api", "SMS"),
    ] {
        portal.offer(product, name).await?;
    }
    portal.create(&weather, "Weather Dashboard", "ada").await?;
    portal.add(&weather, "forecast-api").await?;
    portal.add(&weather, "maps-api").await?;
    let weather_key = portal.generate(&weather, 30).await?;

    portal.create(&checkout, "Checkout", "grace").await?;
    portal.add(&checkout, "payments-api").await?;
    portal.add(&checkout, "fraud-check-api").await?;
    let checkout_key = portal.generate(&checkout, 90).await?;
    // Refused: checkout uses the fraud check.
    portal.withdraw("fraud-check-api").await?;
    // Refused: the catalog does not offer a ledger.
    portal.add(&checkout, "ledger-api").await?;

    portal.create(&fleet, "Fleet Tracker", "barbara").await?;
    portal.add(&fleet, "maps-api").await?;
    portal.add(&fleet, "geocoding-api").await?;
    portal.generate(&fleet, 365).await?;

    portal.create(&sandbox, "Sandbox", "alan").await?;
    // Rejected: credentials grant access to products, and there are none yet.
    portal.generate(&sandbox, 30).await?;
    portal.add(&sandbox, "sms-api").await?;

    // Day 10: checkout changes hands, two products are dropped, the sandbox goes.
    clock.advance(TimeDelta::days(10));
    portal
        .execute(
            &checkout,
            ApplicationCommand::ChangeOwner {
                owner: "linus".into(),
            },
        )
        .await?;
    portal.remove(&checkout, "fraud-check-api").await?;
    // Accepted now that no application uses it; then refused to the fleet tracker.
    portal.withdraw("fraud-check-api").await?;
    portal.add(&fleet, "fraud-check-api").await?;
    portal.remove(&weather, "maps-api").await?;
    portal.execute(&sandbox, ApplicationCommand::Delete).await?;
    // Rejected: a deleted application accepts nothing.
    portal.add(&sandbox, "payments-api").await?;

    // Day 31: the weather key (30 days) is due and replaced; the checkout key (90) is not.
    clock.advance(TimeDelta::days(21));
    for (app, key) in [(&weather, weather_key), (&checkout, checkout_key)] {
        if let Some(key) = key {
            portal
                .execute(app, ApplicationCommand::ExpireCredentials { key })
                .await?;
        }
    }
    portal.generate(&weather, 30).await?;

    let application_ids = vec![weather.clone(), checkout, fleet, sandbox];
    let catalog = build_catalog(&store, &portal.written).await?;

    let surveys = Repository::<Survey, _>::new(store.clone());
    let (removals_handled, surveys_handled) = run_flows(&store, &surveys, &portal.surveys).await?;

    // Ada answers the survey about the maps product.
    if let Some(id) = portal.surveys.iter().find(|id| id.starts_with(&weather)) {
        surveys
            .execute(
                id,
                SurveyCommand::RecordFeedback {
                    rating: 4,
                    comment: "We moved to the new geocoding product.".into(),
                },
            )
            .await?;
    }

    let mut histories = Vec::new();
    let mut states = Vec::new();
    for id in &application_ids {
        histories.push((
            id.clone(),
            history(&store, &portal.apps.stream_id(id)?).await?,
        ));
        states.push((id.clone(), portal.apps.load(id).await?.state));
    }
    let mut survey_histories = Vec::new();
    let mut survey_states = Vec::new();
    for id in &portal.surveys {
        survey_histories.push((id.clone(), history(&store, &surveys.stream_id(id)?).await?));
        survey_states.push((id.clone(), surveys.load(id).await?.state));
    }

    let mut report = Report {
        application_ids,
        histories,
        states,
        rejections: portal.rejections,
        product_decisions: portal.product_decisions,
        catalog,
        surveys: survey_histories,
        survey_states,
        removals_handled,
        surveys_handled,
        text: String::new(),
    };
    report.text = render(&report)?;
    Ok(report)
}

/// Executes the scenario's application commands and keeps track of what they did.
struct Portal<S> {
    apps: Repository<Application, S>,
    decider: Decider<S>,
    rejections: Vec<(String, ApplicationCommand, ApplicationError)>,
    product_decisions: Vec<(String, Result<usize, ProductError>)>,
    /// The stream version each application reached.
    written: BTreeMap<String, Version>,
    /// The surveys the removals call for.
    surveys: Vec<String>,
}

impl<S: EventStore + SnapshotStore> Portal<S> {
    /// Executes `command` on application `id`: its events, or none if it was rejected.
    /// Its events are tagged `application:<id>`, for the product decisions to see.
    async fn execute(
        &mut self,
        id: &str,
        command: ApplicationCommand,
    ) -> Result<Vec<EventEnvelope<ApplicationEvent>>, Error> {
        let context = tagged_context(id)?;
        match self.apps.execute_with(id, command.clone(), context).await {
            Ok(outcome) => {
                self.written.insert(id.to_owned(), outcome.version);
                Ok(outcome.events)
            }
            Err(CommandError::Rejected { error, .. }) => {
                self.rejections.push((id.to_owned(), command, error));
                Ok(Vec::new())
            }
            Err(other) => Err(other.into()),
        }
    }

    async fn create(&mut self, id: &str, name: &str, owner: &str) -> Result<(), Error> {
        let command = ApplicationCommand::Create {
            name: name.to_owned(),
            owner: owner.to_owned(),
        };
        self.execute(id, command).await.map(drop)
    }

    /// Adds `product` to application `id`, by the decision that also asks the catalog.
    async fn add(&mut self, id: &str, product: &str) -> Result<(), Error> {
        let decided = self
            .decider
            .execute(&AddProductToApplication::new(id, product)?)
            .await;
        let command = ApplicationCommand::AddApiProduct {
            product: product.to_owned(),
        };
        let asked = format!("add {product} to application-{id}");
        self.decided(id, command, asked, decided).map(drop)
    }

    /// Removes `product` from application `id` (by a decision, which tags its event as the
    /// add does),
    /// noting the survey the removal calls for.
    async fn remove(&mut self, id: &str, product: &str) -> Result<(), Error> {
        let decided = self
            .decider
            .execute(&RemoveProductFromApplication::new(id, product)?)
            .await;
        let command = ApplicationCommand::RemoveApiProduct {
            product: product.to_owned(),
        };
        let asked = format!("remove {product} from application-{id}");
        for envelope in self.decided(id, command, asked, decided)? {
            if let ApplicationEvent::ApiProductRemoved { product, .. } = &envelope.event {
                self.surveys.push(survey_id(id, product, envelope.version));
            }
        }
        Ok(())
    }

    /// The events a product decision on application `id` recorded, or none if it was
    /// rejected: as if `command` was, when the application's own rules refused it, or
    /// as a product decision refused, when the catalog did.
    fn decided(
        &mut self,
        id: &str,
        command: ApplicationCommand,
        asked: String,
        decided: Result<es_core::Decided<ApplicationEvent>, DecisionError<ProductError>>,
    ) -> Result<Vec<EventEnvelope<ApplicationEvent>>, Error> {
        match decided {
            Ok(decided) => {
                if let Some(last) = decided.events.last() {
                    self.written.insert(id.to_owned(), last.version);
                }
                Ok(decided.events)
            }
            Err(DecisionError::Rejected {
                error: ProductError::Application(error),
                ..
            }) => {
                self.rejections.push((id.to_owned(), command, error));
                Ok(Vec::new())
            }
            Err(DecisionError::Rejected { error, .. }) => {
                self.product_decisions.push((asked, Err(error)));
                Ok(Vec::new())
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Offers `product` in the catalog.
    async fn offer(&mut self, product: &str, name: &str) -> Result<(), Error> {
        let decided = self
            .decider
            .execute(&OfferProduct::new(product, name)?)
            .await;
        self.product(format!("offer {product}"), decided)
    }

    /// Withdraws `product` from the catalog, if no application uses it.
    async fn withdraw(&mut self, product: &str) -> Result<(), Error> {
        let decided = self.decider.execute(&WithdrawProduct::new(product)?).await;
        self.product(format!("withdraw {product}"), decided)
    }

    /// Notes the outcome of a decision on a product.
    fn product<E>(
        &mut self,
        asked: String,
        decided: Result<es_core::Decided<E>, DecisionError<ProductError>>,
    ) -> Result<(), Error> {
        let outcome = match decided {
            Ok(decided) => Ok(decided.events.len()),
            Err(DecisionError::Rejected { error, .. }) => Err(error),
            Err(other) => return Err(other.into()),
        };
        self.product_decisions.push((asked, outcome));
        Ok(())
    }

    /// Generates credentials: the new key, if the command was accepted.
    async fn generate(&mut self, id: &str, valid_for_days: u32) -> Result<Option<String>, Error> {
        let command = ApplicationCommand::GenerateCredentials { valid_for_days };
        let events = self.execute(id, command).await?;
        Ok(events
            .into_iter()
            .find_map(|envelope| match envelope.event {
                ApplicationEvent::CredentialsGenerated { key, .. } => Some(key),
                _ => None,
            }))
    }
}

/// Builds the catalog from the log, catching up until it has seen every version the
/// scenario wrote.
async fn build_catalog<S: Store>(
    store: &S,
    written: &BTreeMap<String, Version>,
) -> Result<ApplicationCatalog, Error> {
    // An in-memory read model: its own checkpoint, no lease to share.
    let mut runner =
        ProjectionRunner::new(store.clone(), ApplicationCatalog::default()).with_lease(None);
    let deadline = Deadline::after(SETTLE_TIMEOUT);
    loop {
        runner.catch_up().await?;
        let catalog = runner.projection();
        if written
            .iter()
            .all(|(id, version)| catalog.version_of(id) >= Some(*version))
        {
            return Ok(runner.into_projection());
        }
        deadline
            .wait("the catalog to see every application event")
            .await?;
    }
}

/// Runs the survey flows until every expected survey has been sent: the flow that adds
/// surveys, then the one that sends them, again while the log still holds events back.
/// Returns how many events each handled.
async fn run_flows<S: Store>(
    store: &S,
    surveys: &Repository<Survey, S>,
    expected: &[String],
) -> Result<(u64, u64), Error> {
    let mut add = ProjectionRunner::new(
        store.clone(),
        ProcessManagerProjection::new(SurveyOnProductRemoval, surveys.clone()),
    );
    let mut send = ProjectionRunner::new(
        store.clone(),
        ProcessManagerProjection::new(SendNewSurveys, surveys.clone()),
    );
    let (mut added, mut sent) = (0, 0);
    let deadline = Deadline::after(SETTLE_TIMEOUT);
    loop {
        added += add.catch_up().await?;
        sent += send.catch_up().await?;
        let mut done = true;
        for id in expected {
            done &= surveys.load(id).await?.state.status >= SurveyStatus::Sent;
        }
        if done {
            return Ok((added, sent));
        }
        deadline.wait("the flows to send every survey").await?;
    }
}

async fn history<S: EventStore, E: DomainEvent>(
    store: &S,
    stream: &es_core::StreamId,
) -> Result<Vec<EventEnvelope<E>>, Error> {
    Ok(store
        .read_stream::<E>(stream, Version::INITIAL)
        .try_collect()
        .await?)
}

/// A time limit for waiting on the log.
struct Deadline(Instant);

impl Deadline {
    fn after(limit: Duration) -> Self {
        Self(Instant::now() + limit)
    }

    /// Pauses briefly, or fails once the time is up.
    async fn wait(&self, what: &str) -> Result<(), Error> {
        if Instant::now() >= self.0 {
            return Err(format!("gave up waiting for {what} after {SETTLE_TIMEOUT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }
}

fn render(report: &Report) -> Result<String, Error> {
    let mut out = String::new();
    writeln!(
        out,
        "Business times come from the portal's clock, which the scenario moves forward;\n\
         the first column is when the store recorded each event.\n"
    )?;
    for ((id, events), (_, state)) in report.histories.iter().zip(&report.states) {
        writeln!(out, "application-{id}")?;
        write_events(&mut out, "  ", events)?;
        let products: Vec<&str> = state.products.iter().map(String::as_str).collect();
        writeln!(
            out,
            "  state rebuilt from {} events: {:?}, \"{}\" owned by {}, products [{}], {} of {} keys active\n",
            events.len(),
            state.status,
            state.name,
            state.owner,
            products.join(", "),
            state.active_keys().count(),
            state.credentials.len(),
        )?;
    }

    writeln!(
        out,
        "API product decisions (across the catalog and the applications that use it):"
    )?;
    for (asked, outcome) in &report.product_decisions {
        match outcome {
            Ok(0) => writeln!(out, "  {asked}: accepted, nothing to record")?,
            Ok(events) => writeln!(out, "  {asked}: accepted, {events} event(s) recorded")?,
            Err(error) => writeln!(out, "  {asked}\n    -> refused: {error}")?,
        }
    }

    writeln!(out, "\nrejected commands:")?;
    for (id, command, error) in &report.rejections {
        writeln!(out, "  application-{id}: {command:?}\n    -> {error}")?;
    }

    writeln!(
        out,
        "\ncatalog (read model from the global log; deleted applications are not listed):"
    )?;
    for id in &report.application_ids {
        let Some(app) = report.catalog.applications.get(id) else {
            continue;
        };
        let products: Vec<&str> = app.products.iter().map(String::as_str).collect();
        writeln!(
            out,
            "  {id:<16} {:<18} owner {:<8} products {:<28} active keys {}",
            app.name,
            app.owner,
            products.join(", "),
            app.active_credentials,
        )?;
    }

    writeln!(
        out,
        "\nsurveys (the flows handled {} product removal(s) and {} new survey(s)):",
        report.removals_handled, report.surveys_handled
    )?;
    for ((id, events), (_, survey)) in report.surveys.iter().zip(&report.survey_states) {
        writeln!(
            out,
            "  survey-{id}: to {} about {}, {:?}",
            survey.recipient, survey.product, survey.status
        )?;
        write_events(&mut out, "    ", events)?;
    }
    Ok(out)
}

fn write_events<E: DomainEvent>(
    out: &mut String,
    indent: &str,
    events: &[EventEnvelope<E>],
) -> Result<(), Error> {
    for envelope in events {
        writeln!(
            out,
            "{indent}v{:<2} {}  {:<22} {}",
            envelope.version,
            envelope.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            envelope.event.event_type(),
            envelope.event.encode()?,
        )?;
    }
    Ok(())
}
