//! The token check: `Authorization: Bearer <token>`, or a `token` query parameter where a
//! browser cannot set a header. Compared in constant time; never logged.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::State;
use crate::errors::json_error;

/// Whether a route also takes the token as a `token` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Query {
    /// `/api/events`: a browser's WebSocket cannot send a header.
    Accepted,
    /// Everything else: a query string ends up in logs and histories.
    Refused,
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

impl State {
    /// `None` when no token is set or the request carries the right one; else the `401` to
    /// answer with.
    pub(crate) fn refusal(&self, req: &HttpRequest, query: Query) -> Option<HttpResponse> {
        let expected = self.options.token.as_ref()?;
        token_refusal(req, expected, query)
    }
}

/// `None` when the request carries `expected`; else the `401` to answer with.
pub(crate) fn token_refusal(
    req: &HttpRequest,
    expected: &wsherd::config::Token,
    query: Query,
) -> Option<HttpResponse> {
    {
        let from_query = || {
            actix_web::web::Query::<TokenQuery>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.into_inner().token)
        };
        let given = match bearer(req) {
            Some(token) => Some(token.to_owned()),
            None if query == Query::Accepted => from_query(),
            None => None,
        };
        let why = match given {
            Some(given) if same(given.as_bytes(), expected.expose().as_bytes()) => return None,
            Some(_) => "wrong token",
            None => "no token",
        };
        // The path only: the query may hold the (wrong) token.
        tracing::debug!(path = req.path(), "refused: {why}");
        let message = match query {
            Query::Accepted => {
                "this needs Authorization: Bearer <token> (or ?token=<token>), and the right token"
            }
            Query::Refused => "this needs Authorization: Bearer <token>, and the right token",
        };
        let mut response = json_error(StatusCode::UNAUTHORIZED, message);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"wsherd\""),
        );
        Some(response)
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Equal, in time that depends on the lengths only, never on where the bytes differ.
fn same(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_equal_only_byte_for_byte() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3creT"));
        assert!(!same(b"s3cret", b"s3cret!"));
        assert!(!same(b"", b"s3cret"));
    }

    #[test]
    fn a_bearer_header_is_read_in_any_case_of_the_scheme() {
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::AUTHORIZATION, "bearer  abc "))
            .to_http_request();
        assert_eq!(bearer(&req), Some("abc"));
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Basic abc"))
            .to_http_request();
        assert_eq!(bearer(&req), None);
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Bearer"))
            .to_http_request();
        assert_eq!(bearer(&req), None);
    }
}
