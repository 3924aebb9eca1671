//! `/api/status`, `/api/status/{name}` and, in a cluster, `/api/cluster`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use wsherd::Herd;

use crate::State;
use crate::auth::Query;
use crate::errors::{json_error, shown};
use crate::events::lines::status_json;

/// Every endpoint this herd runs, sorted by name; in a cluster each says `"owner"` (this
/// member: the others' endpoints are in `/api/cluster`).
pub(crate) async fn all(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Some(refused) = state.refusal(&req, Query::Refused) {
        return refused;
    }
    let member = member(&state.herd);
    let statuses: Vec<Value> = state
        .herd
        .status()
        .iter()
        .map(|status| owned(status_json(status), member.as_deref()))
        .collect();
    HttpResponse::Ok().json(statuses)
}

/// One endpoint; `404` when there is none by that name here (saying who runs it, in a
/// cluster).
pub(crate) async fn one(
    req: HttpRequest,
    state: web::Data<State>,
    name: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = state.refusal(&req, Query::Refused) {
        return refused;
    }
    if let Some(status) = state.herd.endpoint_status(&name) {
        let member = member(&state.herd);
        return HttpResponse::Ok().json(owned(status_json(&status), member.as_deref()));
    }
    let Some(membership) = state.herd.membership() else {
        return unknown_endpoint(&name);
    };
    let Some(seen) = membership
        .ownership()
        .into_iter()
        .find(|o| o.endpoint.as_str() == name.as_str())
    else {
        return unknown_endpoint(&name);
    };
    let why = match seen.owner {
        // Its lease names this member, which has not started it (yet, or any more).
        Some(owner) if owner == membership.member() => {
            format!(
                "endpoint {} is held by this member but not running",
                shown(&name)
            )
        }
        Some(owner) => format!(
            "endpoint {} runs on member {}, not here",
            shown(&name),
            shown(&owner)
        ),
        None => format!("endpoint {} has no owner now", shown(&name)),
    };
    json_error(StatusCode::NOT_FOUND, why)
}

/// `GET /api/cluster`: this member, the live members, every endpoint's owner and the
/// cluster's counters; `404` when the herd is not in a cluster.
pub(crate) async fn cluster(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Some(refused) = state.refusal(&req, Query::Refused) {
        return refused;
    }
    let Some(membership) = state.herd.membership() else {
        return json_error(StatusCode::NOT_FOUND, "this herd is not in a cluster");
    };
    let endpoints: Vec<Value> = membership
        .ownership()
        .iter()
        .map(|o| json!({ "name": o.endpoint.as_str(), "owner": o.owner, "local": o.local }))
        .collect();
    let figures: serde_json::Map<String, Value> = membership
        .figures()
        .iter()
        .map(|figure| (figure.name.to_owned(), Value::from(figure.value)))
        .collect();
    HttpResponse::Ok().json(json!({
        "member": membership.member(),
        "members": membership.members(),
        "endpoints": endpoints,
        "counters": figures,
    }))
}

/// This member's name, in a cluster.
fn member(herd: &Herd) -> Option<String> {
    herd.membership().map(|membership| membership.member())
}

/// `status` with `"owner"` when the herd is a cluster's member.
fn owned(mut status: Value, member: Option<&str>) -> Value {
    if let (Some(member), Some(object)) = (member, status.as_object_mut()) {
        object.insert("owner".to_owned(), Value::from(member));
    }
    status
}

/// The `404` for a name the herd does not have.
pub(crate) fn unknown_endpoint(name: &str) -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        format!("no endpoint named {}", shown(name)),
    )
}
