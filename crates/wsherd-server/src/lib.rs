//! The serving half of wsherd: what an operator asks a running herd over HTTP.
//!
//! | route | answers |
//! | --- | --- |
//! | `GET /` | the dashboard: one self-contained page (no data of its own, so no token; it asks for one when `/api` needs it); off with [`ServerOptions::dashboard`] |
//! | `GET /healthz` | `200` while the herd runs (started), `503` before; never needs the token |
//! | `GET /readyz` | `200` when every `required = true` endpoint is live, else `503` naming those that are not; never needs the token |
//! | `GET /metrics` | Prometheus text: whatever the installed recorder holds, plus herd-wide gauges read at scrape time |
//! | `GET /api/status` | a JSON array, one object per endpoint this herd runs (in a cluster each has `"owner"`) |
//! | `GET /api/status/{name}` | one endpoint's object, `404` if there is none (in a cluster, saying which member runs it) |
//! | `GET /api/cluster` | in a cluster (`wsherd-cluster`): this member, the live members, every endpoint's owner and the cluster's counters; `404` outside one |
//! | `POST /api/endpoints/{name}/{action}` | `reconnect`, `pause`, `resume` or `stop` |
//! | `GET /api/events` | a WebSocket: every state change, and once a second a stats line per endpoint that changed |
//! | `GET <gateway.path>` | with [`ServerOptions::gateway`]: the fan-out gateway, a WebSocket where clients subscribe to topics (see `[gateway]` in the configuration reference) |
//!
//! Mount it into an application's own `App`, or let [`serve`] run it alone:
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use wsherd_server::ServerOptions;
//!
//! # async fn demo(herd: wsherd::Herd) -> std::io::Result<()> {
//! let options = ServerOptions::new().prometheus(wsherd_server::install_prometheus().ok());
//! HttpServer::new(move || {
//!     App::new().configure(wsherd_server::routes(herd.clone(), options.clone()))
//! })
//! // Lets a client of /api/events that stops reading be cut at once (see `on_connect`).
//! .on_connect(wsherd_server::on_connect)
//! .bind(("127.0.0.1", 9090))?
//! .run()
//! .await
//! # }
//! ```
//!
//! With a token ([`ServerOptions::token`]), `/metrics` and `/api/*` need
//! `Authorization: Bearer <token>`; `/api/events` also takes it as a `token` query parameter,
//! for browsers, whose WebSocket cannot set a header. Tokens are compared in constant time and
//! never logged: this crate logs request paths, never query strings or headers.
//!
//! Every error is JSON, `{"error": "..."}`, with a 4xx status: an unknown endpoint or action
//! (`404`), a wrong method (`405`), a missing or wrong token (`401`), a body that is not a JSON
//! object (`400`) or larger than [`ServerOptions::max_body`] (`413`). Mounted in an application,
//! `/api/*` is this crate's: an unknown path under it is a JSON `404`.
#![forbid(unsafe_code)]

mod auth;
mod control;
mod dashboard;
mod errors;
mod events;
mod gateway;
mod health;
mod inbound;
mod keepalive;
mod metrics;
mod options;
mod serve;
mod socket;
mod status;

use std::sync::Arc;

use actix_web::web;
use wsherd::Herd;

pub use events::lines::{state_line, stats_line, status_json, timestamp};
pub use metrics::install_prometheus;
pub use metrics_exporter_prometheus::PrometheusHandle;
pub use options::{EventLimits, InboundAuthHook, Refusal, ServerOptions};
pub use serve::{
    MAX_CONNECTIONS, MAX_INBOUND_CONNECTIONS, RunningServer, ServeError, serve, tls_config,
};
pub use socket::on_connect;

/// What the handlers of one [`routes`] share: the herd, the options, this worker's event hub
/// and its cache of the last `/metrics` text.
pub(crate) struct State {
    pub(crate) herd: Herd,
    pub(crate) options: ServerOptions,
    pub(crate) hub: events::HubSlot,
    pub(crate) metrics: metrics::Cache,
    /// This worker's gateway sessions and their relay.
    pub(crate) gateway: Arc<gateway::Registry>,
}

/// The routes, for `App::configure`: `App::new().configure(wsherd_server::routes(herd, options))`.
///
/// Call it in the `HttpServer::new` factory, once per worker (clones of `options` share
/// their counters, so `/metrics` counts event clients over all workers). The routes sit at
/// `/healthz`, `/readyz`, `/metrics` and under `/api`. To cut an `/api/events` client that
/// stops reading at once, also give the server [`on_connect`]; without it such a client gets
/// nothing more and its buffer is freed, but its connection stays open until it goes away.
pub fn routes(herd: Herd, options: ServerOptions) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config: &mut web::ServiceConfig| {
        let inbound = herd.inbound_endpoints();
        let state = web::Data::from(Arc::new(State {
            herd,
            options,
            hub: events::HubSlot::default(),
            metrics: metrics::Cache::default(),
            gateway: Arc::default(),
        }));
        config
            .service(
                web::resource("/healthz")
                    .app_data(state.clone())
                    .route(web::get().to(health::healthz))
                    .default_service(web::to(errors::get_only)),
            )
            .service(
                web::resource("/readyz")
                    .app_data(state.clone())
                    .route(web::get().to(health::readyz))
                    .default_service(web::to(errors::get_only)),
            )
            .service(
                web::resource("/metrics")
                    .app_data(state.clone())
                    .route(web::get().to(metrics::metrics))
                    .default_service(web::to(errors::get_only)),
            )
            .service(
                web::scope("/api")
                    .app_data(state.clone())
                    .service(
                        web::resource("/status")
                            .route(web::get().to(status::all))
                            .default_service(web::to(errors::get_only)),
                    )
                    .service(
                        web::resource("/status/{name}")
                            .route(web::get().to(status::one))
                            .default_service(web::to(errors::get_only)),
                    )
                    .service(
                        web::resource("/cluster")
                            .route(web::get().to(status::cluster))
                            .default_service(web::to(errors::get_only)),
                    )
                    .service(
                        web::resource("/endpoints/{name}/{action}")
                            .route(web::post().to(control::control))
                            .default_service(web::to(errors::post_only)),
                    )
                    .service(
                        web::resource("/events")
                            .route(web::get().to(events::events))
                            .default_service(web::to(errors::get_only)),
                    )
                    .default_service(web::to(errors::not_found)),
            );
        if let Some(gateway) = &state.options.gateway {
            if let Some(why) = gateway.problem() {
                // `serve` refuses these; an application's own server gets no gateway route.
                tracing::error!("the gateway is not served: {why}");
            } else {
                config.service(
                    web::resource(gateway.path.as_str())
                        .app_data(state.clone())
                        .route(web::get().to(gateway::session))
                        .default_service(web::to(errors::get_only)),
                );
            }
        }
        if state.options.dashboard {
            config.service(
                web::resource("/")
                    .route(web::get().to(dashboard::page))
                    .default_service(web::to(errors::get_only)),
            );
        }
        // After the server's own routes: a path such as `/{id}` never shadows `/healthz`.
        for endpoint in inbound {
            config.service(
                web::resource(endpoint.path())
                    .app_data(state.clone())
                    .app_data(web::Data::new(inbound::InboundRoute(
                        endpoint.name().to_string(),
                    )))
                    .route(web::get().to(inbound::session))
                    .default_service(web::to(errors::get_only)),
            );
        }
    }
}
