//! The service: its router, started on a store, served with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use es_core::RetryPolicy;
use es_postgres::PgStoreError;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::backend::{Backend, Orders};
use crate::read_model::{self, PgSetupError};
use crate::routes::{self, AppState};
use crate::{correlation, observe, openapi};

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// How commands retry conflicts and store failures.
    pub retry: RetryPolicy,
    /// How long `GET /orders?after=` waits for the read model before answering 504.
    pub read_wait: Duration,
    /// How long a graceful shutdown waits, once signalled, for the requests under way to
    /// finish: a client that never sends the rest of its request cannot hold the process.
    /// Connections still open then are abandoned: [`Service::serve`] returns without them,
    /// and they end with the process.
    pub shutdown_grace: Duration,
    /// Whether a command request's `traceparent` header goes into its events' metadata
    /// ([`CommandContext::with_traceparent`](es_core::CommandContext::with_traceparent)),
    /// so that whatever handles the events continues the caller's trace. Off by default:
    /// a client that sets it picks the trace id, sampling flag and parent that the
    /// service's events carry for good, so only a service behind upstreams that set or
    /// sanitise the header (a gateway, another service of yours) should turn it on.
    pub trust_traceparent: bool,
}

impl Default for Config {
    /// The repository's default retries; reads of your writes wait up to 5 s; a shutdown
    /// waits up to 10 s for the requests under way; a request's `traceparent` is not trusted.
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            read_wait: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            trust_traceparent: false,
        }
    }
}

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The PostgreSQL schema could not be migrated.
    #[error("cannot migrate the event store's schema")]
    Migrate(#[source] PgStoreError),
    /// The read model's table could not be migrated.
    #[error(transparent)]
    ReadModel(#[from] PgSetupError),
}

/// Declares the routes once: the router is built from this list, and [`ROUTES`] lists it
/// for the test that checks the OpenAPI document against it.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every route the service serves (besides `/metrics` with the `prometheus`
        /// feature), as `(method, path)`.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn with_routes(router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
            router $(.route($path, axum::routing::$method($handler)))*
        }
    };
}

routes! {
    post "/orders/{id}/place" => routes::place,
    post "/orders/{id}/pay" => routes::pay,
    post "/orders/{id}/prepare" => routes::prepare,
    post "/orders/{id}/ship" => routes::ship,
    get "/orders/{id}" => routes::get_order,
    get "/orders/{id}/as-of" => routes::get_order_as_of,
    get "/orders/{id}/history" => routes::history,
    get "/orders" => routes::list_orders,
    get "/events" => routes::events,
    get "/openapi.json" => openapi::openapi_json,
}

/// A started service: the read model's runner is running; [`serve`](Service::serve) or
/// [`spawn`](Service::spawn) it.
#[derive(Debug)]
pub struct Service {
    state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    shutdown_grace: Duration,
    projector: JoinHandle<()>,
}

impl Service {
    /// Starts the service on `backend`: migrates PostgreSQL's schema (and the read model's
    /// table, so that a read before the runner's first batch finds it), and starts the
    /// read model's runner. Safe from several processes starting at once on one schema.
    ///
    /// # Errors
    ///
    /// Fails if PostgreSQL's schema or the read model's table cannot be migrated.
    pub async fn start(backend: Backend, config: Config) -> Result<Self, StartError> {
        if let Backend::Postgres(store) = &backend {
            store.migrate().await.map_err(StartError::Migrate)?;
        }
        let (shutdown, stopping) = watch::channel(false);
        let projector = read_model::start(&backend, stopping.clone()).await?;
        let state = Arc::new(AppState {
            orders: Orders::new(&backend, config.retry),
            read_model: projector.read_model,
            projection: projector.status,
            read_wait: config.read_wait,
            trust_traceparent: config.trust_traceparent,
            shutdown: stopping,
        });
        Ok(Self {
            state,
            shutdown,
            shutdown_grace: config.shutdown_grace,
            projector: projector.task,
        })
    }

    /// The orders repository the service executes commands with.
    pub fn orders(&self) -> &Orders {
        &self.state.orders
    }

    /// The router: every route, with correlation ids, and request metrics of every request.
    pub fn router(&self) -> Router {
        let router = with_routes(Router::new())
            .layer(axum::middleware::from_fn(correlation::middleware))
            .with_state(self.state.clone());
        #[cfg(feature = "prometheus")]
        let router = router.merge(
            Router::new()
                .route("/metrics", axum::routing::get(observe::prometheus::metrics))
                .with_state(observe::prometheus::handle()),
        );
        // `layer`, not `route_layer`, and after the merge (which would keep a fallback
        // without it): requests that match no route (404) or no method of their route
        // (405) are counted too, under fixed labels.
        router.layer(axum::middleware::from_fn(observe::record))
    }

    /// Serves on `listener` until `signal` completes, then shuts down gracefully: stops
    /// accepting, ends the live event streams, lets requests under way finish (for up to
    /// [`Config::shutdown_grace`], then abandons the connections still open), and stops the
    /// read model's runner (which commits what it handled).
    ///
    /// # Errors
    ///
    /// Fails if serving fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        let shutdown = self.shutdown.clone();
        let served = axum::serve(listener, router).with_graceful_shutdown(async move {
            signal.await;
            tracing::info!("shutting down");
            let _ = shutdown.send(true);
        });
        let mut stopping = self.shutdown.subscribe();
        let grace = self.shutdown_grace;
        let deadline = async move {
            // A dropped sender is a shutdown too.
            let _ = stopping.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        };
        let served = tokio::select! {
            served = served => served,
            () = deadline => {
                // axum serves each connection in a task of its own: dropping the server
                // stops the wait, and the process ending ends them.
                tracing::warn!(
                    grace = ?grace,
                    "requests still under way after the shutdown grace; not waiting for them"
                );
                Ok(())
            }
        };
        let _ = self.shutdown.send(true);
        if let Err(error) = self.projector.await {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "the read model's runner panicked"
            );
        }
        served
    }

    /// Binds `addr` and serves there in a task of its own until [`Running::stop`].
    ///
    /// # Errors
    ///
    /// Fails if `addr` cannot be bound.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<Running> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(listener, async move {
            let _ = stopped.await;
        }));
        Ok(Running {
            addr,
            stop: Some(stop),
            task,
        })
    }
}

/// A service serving in the background.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Its base URL, `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts it down gracefully and waits until it has.
    ///
    /// # Errors
    ///
    /// Fails if serving failed.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(served) => served,
            Err(error) => Err(std::io::Error::other(error)),
        }
    }
}
