//! `POST /api/endpoints/{name}/{action}`: what an operator does to one endpoint.
//!
//! | action | does | answers |
//! | --- | --- | --- |
//! | `reconnect` | closes the socket and connects again at once (from `failed` too) | `202` |
//! | `pause` | closes the socket and keeps the endpoint down; sends queue meanwhile | `202` |
//! | `resume` | connects a paused endpoint again | `202` |
//! | `stop` | closes gracefully (Close 1000), waits for the close, and removes the endpoint from the herd; it comes back only with a reload of a config that has it (`SIGHUP` for `wsherd run`) | `200` with `unsent`, how many accepted messages it had not sent (they are dropped) |
//!
//! The body may be empty or a JSON object with an optional `reason` (the Close reason `stop`
//! sends, at most 123 bytes are sent); anything else is a `400`, a body over the size cap a
//! `413`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures_core::Stream;
use serde::Deserialize;
use serde_json::json;
use wsherd::CloseCode;

use crate::State;
use crate::auth::Query;
use crate::errors::{json_error, shown};
use crate::status::unknown_endpoint;

/// The actions, as the path names them.
const ACTIONS: [&str; 4] = ["reconnect", "pause", "resume", "stop"];

/// An action's optional body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlBody {
    /// The Close reason of a `stop`.
    reason: Option<String>,
}

/// `POST /api/endpoints/{name}/{action}`.
pub(crate) async fn control(
    req: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    if let Some(refused) = state.refusal(&req, Query::Refused) {
        return refused;
    }
    let (name, action) = path.into_inner();
    let Some(action) = ACTIONS.iter().copied().find(|known| *known == action) else {
        return json_error(
            StatusCode::NOT_FOUND,
            format!(
                "no action {}; the actions are {}",
                shown(&action),
                ACTIONS.join(", ")
            ),
        );
    };
    let body = match read_body(&req, payload, state.options.max_body).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let body: ControlBody = if body.iter().all(u8::is_ascii_whitespace) {
        ControlBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(error) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the body must be empty or a JSON object such as {{\"reason\": \"…\"}}: {error}"
                    ),
                );
            }
        }
    };
    let herd = &state.herd;
    let done = match action {
        "reconnect" => herd.reconnect(&name),
        "pause" => herd.pause(&name),
        "resume" => herd.resume(&name),
        _ => {
            let reason = body.reason.as_deref().unwrap_or("stopped over HTTP");
            return match herd.remove_endpoint(&name, CloseCode::NORMAL, reason).await {
                Ok(unsent) => {
                    tracing::info!(endpoint = name.as_str(), "stopped and removed over HTTP");
                    HttpResponse::Ok().json(json!({
                        "endpoint": name,
                        "action": action,
                        "unsent": unsent.len(),
                    }))
                }
                Err(_) => unknown_endpoint(&name),
            };
        }
    };
    match done {
        Ok(()) => {
            tracing::info!(endpoint = name.as_str(), "{action} requested over HTTP");
            HttpResponse::Accepted().json(json!({ "endpoint": name, "action": action }))
        }
        Err(_) => unknown_endpoint(&name),
    }
}

/// The request body, up to `max` bytes; a larger one is a `413` (at once when its length is
/// announced, else as soon as more than `max` arrived).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    max: usize,
) -> Result<BytesMut, Box<HttpResponse>> {
    let too_large = || {
        Box::new(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {max} bytes"),
        ))
    };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > max as u64) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut payload).poll_next(cx)).await
    {
        let chunk = chunk.map_err(|error| {
            Box::new(json_error(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {error}"),
            ))
        })?;
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
