//! `/healthz` and `/readyz`: what an orchestrator probes. Neither needs the token.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::State;

/// `200 {"status": "ok"}` while the herd runs; `503` before it was started.
pub(crate) async fn healthz(state: web::Data<State>) -> HttpResponse {
    if state.herd.is_started() {
        HttpResponse::Ok().json(json!({ "status": "ok" }))
    } else {
        HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .json(json!({ "status": "not started" }))
    }
}

/// `200 {"ready": true}` when every required endpoint is live; else `503` with the names of
/// those that are not.
pub(crate) async fn readyz(state: web::Data<State>) -> HttpResponse {
    let not_live = state.herd.not_ready();
    if not_live.is_empty() {
        HttpResponse::Ok().json(json!({ "ready": true }))
    } else {
        let names: Vec<&str> = not_live.iter().map(|name| name.as_str()).collect();
        HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .json(json!({ "ready": false, "not_live": names }))
    }
}
