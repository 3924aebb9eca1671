//! `/api/status` and `/api/status/{name}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use crate::State;
use crate::auth::Query;
use crate::errors::{json_error, shown};
use crate::events::lines::status_json;

/// Every endpoint, sorted by name.
pub(crate) async fn all(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Some(refused) = state.refusal(&req, Query::Refused) {
        return refused;
    }
    let statuses: Vec<Value> = state.herd.status().iter().map(status_json).collect();
    HttpResponse::Ok().json(statuses)
}

/// One endpoint; `404` when there is none by that name.
pub(crate) async fn one(
    req: HttpRequest,
    state: web::Data<State>,
    name: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = state.refusal(&req, Query::Refused) {
        return refused;
    }
    match state.herd.endpoint_status(&name) {
        Some(status) => HttpResponse::Ok().json(status_json(&status)),
        None => unknown_endpoint(&name),
    }
}

/// The `404` for a name the herd does not have.
pub(crate) fn unknown_endpoint(name: &str) -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        format!("no endpoint named {}", shown(name)),
    )
}
