//! JSON errors: `{"error": "..."}` with a 4xx status.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

/// `{"error": message}` with `status`.
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.into() }))
}

/// Text from a request, safe to put in an answer or a log line: at most 64 characters,
/// quoted and escaped.
pub(crate) fn shown(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// The answer to `req`'s WebSocket upgrade, or a `400` that says the path is a WebSocket
/// (the path shown as [`shown`] makes it safe; never the query).
pub(crate) fn upgrade_or_400(
    req: &HttpRequest,
) -> Result<actix_web::HttpResponseBuilder, Box<HttpResponse>> {
    actix_web_actors::ws::handshake(req).map_err(|error| {
        Box::new(json_error(
            StatusCode::BAD_REQUEST,
            format!(
                "{} is a WebSocket; this request is no WebSocket upgrade: {error}",
                shown(req.path())
            ),
        ))
    })
}

/// No route at this path (the query is never shown: it may hold a token).
pub(crate) async fn not_found(req: HttpRequest) -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        format!("no route {}", shown(req.path())),
    )
}

/// The route exists and takes only GET.
pub(crate) async fn get_only(req: HttpRequest) -> HttpResponse {
    method_not_allowed(&req, "GET")
}

/// The route exists and takes only POST.
pub(crate) async fn post_only(req: HttpRequest) -> HttpResponse {
    method_not_allowed(&req, "POST")
}

fn method_not_allowed(req: &HttpRequest, allowed: &'static str) -> HttpResponse {
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} takes {allowed}, not {}",
            shown(req.path()),
            shown(req.method().as_str())
        ),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allowed));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_text_is_quoted_and_cut_at_sixty_four_characters() {
        assert_eq!(shown("feed"), "\"feed\"");
        let long = "é".repeat(100);
        let cut = shown(&long);
        assert_eq!(cut.chars().filter(|c| *c == 'é').count(), 64);
        assert!(cut.ends_with('…'));
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
    }
}
