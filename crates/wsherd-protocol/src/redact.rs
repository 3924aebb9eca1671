//! Showing a URL without the secrets it may carry.
//!
//! Feeds put credentials in URLs (`?token=…`, `?listenKey=…`, `user:pass@host`), and URLs end up
//! in events, logs, status and error messages. Everything that shows one shows
//! [`redact_url`]'s version of it; only the socket gets the real one.

/// What stands in for a hidden part of a URL.
pub const REDACTED: &str = "***";

/// `url` with its secrets replaced by `***`, for anything shown to people; the real URL is still
/// the one connected to.
///
/// - Scheme, host, port and path are kept: they say where, and tell endpoints apart.
/// - Userinfo (`user:pass@`) becomes `***@`.
/// - Every query value becomes `***` and its key is kept (`?token=***&depth=***`); an empty
///   value stays empty; an item without `=` becomes `***`, since it may be a bare token.
/// - A fragment becomes `#***`.
///
/// Text that is not a well-formed URL is read as far as it goes, erring on the side of hiding:
/// whatever follows a `?` is a query, whatever precedes the last `@` before the first `/` is
/// userinfo. It never panics.
///
/// ```
/// use wsherd_protocol::redact_url;
///
/// assert_eq!(
///     redact_url("wss://bob:hunter2@feed.example:443/ws?listenKey=abc&depth=10#x"),
///     "wss://***@feed.example:443/ws?listenKey=***&depth=***#***"
/// );
/// assert_eq!(redact_url("ws://127.0.0.1:9001/feed"), "ws://127.0.0.1:9001/feed");
/// ```
pub fn redact_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    // A `#` ends the query too, and a `?` after a `#` belongs to the fragment.
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (url, None),
    };
    let (location, query) = match before_fragment.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (before_fragment, None),
    };
    let (scheme, rest) = split_scheme(location);
    out.push_str(scheme);
    // Parsers skip a run of slashes before the authority: `ws:///u:p@h` has userinfo `u:p`.
    let slashes = rest.len() - rest.trim_start_matches(['/', '\\']).len();
    let (slashes, rest) = rest.split_at(slashes);
    out.push_str(slashes);
    // The authority runs to the first slash; WHATWG parsers treat a backslash as one too.
    let authority_end = rest.find(['/', '\\']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    // The last `@` separates userinfo from the host: a password may itself hold an `@`.
    match authority.rsplit_once('@') {
        Some((_, host)) => {
            out.push_str(REDACTED);
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        for (i, item) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match item.split_once('=') {
                Some((key, "")) => {
                    out.push_str(key);
                    out.push('=');
                }
                Some((key, _)) => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                None if item.is_empty() => {}
                None => out.push_str(REDACTED),
            }
        }
    }
    match fragment {
        Some("") => out.push('#'),
        Some(_) => {
            out.push('#');
            out.push_str(REDACTED);
        }
        None => {}
    }
    out
}

/// `("ws://", rest)` when `location` starts with a scheme and `://`, else `("", location)`.
/// What precedes the `://` counts as a scheme only without a slash or an `@`: a `://` deeper in
/// the text must not turn the userinfo before it into a scheme that is shown.
fn split_scheme(location: &str) -> (&str, &str) {
    match location.find("://") {
        Some(end) if !location[..end].contains(['/', '\\', '@']) => location.split_at(end + 3),
        _ => ("", location),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_without_secrets_is_shown_as_it_is() {
        for url in [
            "ws://127.0.0.1:9001/feed",
            "wss://stream.example.com/ws/btcusdt@trade",
            "ws://localhost",
            "ws://[::1]:9001/",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn query_values_are_hidden_and_keys_kept() {
        assert_eq!(
            redact_url("wss://x.example/ws?token=abc&listenKey=k3y"),
            "wss://x.example/ws?token=***&listenKey=***"
        );
        assert_eq!(redact_url("ws://h/?a=1=2"), "ws://h/?a=***");
    }

    #[test]
    fn an_empty_value_stays_empty_and_a_bare_item_is_hidden() {
        assert_eq!(redact_url("ws://h/p?token="), "ws://h/p?token=");
        assert_eq!(redact_url("ws://h/p?s3cr3t"), "ws://h/p?***");
        assert_eq!(redact_url("ws://h/p?"), "ws://h/p?");
        assert_eq!(redact_url("ws://h/p?a=1&&b=2"), "ws://h/p?a=***&&b=***");
    }

    #[test]
    fn userinfo_is_hidden_up_to_the_last_at_sign() {
        assert_eq!(redact_url("wss://bob:pw@h:443/x"), "wss://***@h:443/x");
        assert_eq!(redact_url("wss://bob:p@ss@h/x"), "wss://***@h/x");
        assert_eq!(redact_url("ws://token@h"), "ws://***@h");
        // An `@` in the path is not userinfo.
        assert_eq!(redact_url("ws://h/users/@me"), "ws://h/users/@me");
    }

    #[test]
    fn a_fragment_is_hidden() {
        assert_eq!(
            redact_url("ws://h/p?a=1#access_token=x"),
            "ws://h/p?a=***#***"
        );
        assert_eq!(redact_url("ws://h/p#"), "ws://h/p#");
        // A `?` inside the fragment is part of the fragment.
        assert_eq!(redact_url("ws://h/p#frag?token=x"), "ws://h/p#***");
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets_and_port() {
        assert_eq!(
            redact_url("ws://u:p@[fe80::1%25eth0]:9001/feed?k=v"),
            "ws://***@[fe80::1%25eth0]:9001/feed?k=***"
        );
    }

    #[test]
    fn percent_encoding_is_left_alone_and_still_hidden() {
        assert_eq!(
            redact_url("ws://h/p?to%6Ben=s%33cret&x=%26"),
            "ws://h/p?to%6Ben=***&x=***"
        );
        // An encoded `@` is part of the userinfo, not its end.
        assert_eq!(redact_url("ws://a%40b:pw@h/"), "ws://***@h/");
    }

    #[test]
    fn malformed_urls_never_leak_what_looks_like_a_secret() {
        assert_eq!(redact_url("user:pass@host/x?k=v"), "***@host/x?k=***");
        assert_eq!(redact_url("ws:user:pass@host"), "***@host");
        assert_eq!(redact_url("u:p@h/p://x"), "***@h/p://x");
        assert_eq!(redact_url("://u:p@h"), "://***@h");
        assert_eq!(redact_url("u:p@h://x"), "***@h://x");
        assert_eq!(redact_url("//u:p@h/x"), "//***@h/x");
        assert_eq!(redact_url("ws:///u:p@h"), "ws:///***@h");
        assert_eq!(redact_url("not a url?secret"), "not a url?***");
        assert_eq!(redact_url("ws://u:p@h\\p?k=v"), "ws://***@h\\p?k=***");
        assert_eq!(redact_url("ws://ü:ß@hé/ä?ö=ü#ß"), "ws://***@hé/ä?ö=***#***");
    }

    proptest::proptest! {
        /// Whatever the text, redaction returns, and a value planted in the query, the
        /// userinfo or the fragment never survives it.
        #[test]
        fn no_input_panics_or_keeps_a_planted_secret(
            prefix in "\\PC{0,20}",
            path in "[^?#]{0,20}",
            place in 0usize..3,
        ) {
            let secret = "Zq9SECRETzq9";
            let url = match place {
                0 => format!("{prefix}ws://h/{path}?k={secret}"),
                1 => format!("ws://{secret}@h/{path}"),
                _ => format!("{prefix}ws://h/{path}#{secret}"),
            };
            let shown = redact_url(&url);
            proptest::prop_assert!(!shown.contains(secret), "{} -> {}", url, shown);
            let _ = redact_url(&prefix);
        }
    }
}
