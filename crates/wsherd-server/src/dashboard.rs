//! `GET /`: the dashboard, one self-contained page: its script and styles are inline and it
//! fetches nothing from elsewhere, so it works offline. It holds no data: it reads
//! `/api/status` and `/api/events` of the server that served it (asking for the token when
//! they need one), so it is served without the token.
//!
//! The page renders at most once a second for updates, and only the rows in view, so a herd
//! of thousands of endpoints stays responsive.

use actix_web::HttpResponse;
use actix_web::http::header;

/// The page (`assets/dashboard.html`), embedded in the binary.
pub(crate) const PAGE: &str = include_str!("../assets/dashboard.html");

/// What the page may do: run its own inline script and styles, talk to this server (its
/// `/api`, its events WebSocket), and nothing else; no framing by other sites.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src data:; form-action 'none'; \
                      frame-ancestors 'none'; base-uri 'none'";

/// `GET /`.
pub(crate) async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(PAGE)
}
