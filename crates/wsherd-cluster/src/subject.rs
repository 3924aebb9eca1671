//! Subjects and keys: how endpoint names, kinds and members become NATS subject tokens and
//! key-value keys, and back.
//!
//! **Subject tokens.** A NATS token may not hold `.` (the separator), `*` or `>` (wildcards)
//! or whitespace. Those bytes, control characters and `%` itself are written `%XX` (two
//! uppercase hex digits per UTF-8 byte); every other character stays as it is. The empty
//! string (a message without a kind) is the token `%`. So `ticker.btc` is `ticker%2Ebtc`, a
//! kind `price update` is `price%20update`, and [`unescape_token`] gives back the original
//! for every token [`escape_token`] writes.
//!
//! **Keys.** Bucket keys allow fewer characters (`-`, `/`, `_`, `=`, letters and digits): the
//! same rule with `=` as the escape (`=2E` for `.`), applied to everything else.

/// Writes `text` as one subject token (see the module's rule).
pub fn escape_token(text: &str) -> String {
    if text.is_empty() {
        return "%".to_owned();
    }
    escape(text, b'%', |b| {
        !(b == b'.'
            || b == b'*'
            || b == b'>'
            || b == b'%'
            || b.is_ascii_whitespace()
            || b < 0x20
            || b == 0x7f)
            && !is_unicode_space_start(b)
    })
}

/// Reads a token [`escape_token`] wrote; `None` for one it could not have written.
pub fn unescape_token(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    unescape(token, b'%')
}

/// Writes `text` as a bucket key (see the module's rule).
pub fn escape_key(text: &str) -> String {
    escape(text, b'=', |b| {
        b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'/'
    })
}

/// Reads a key [`escape_key`] wrote.
pub fn unescape_key(key: &str) -> Option<String> {
    unescape(key, b'=')
}

/// Non-ASCII whitespace (U+0085, U+00A0, U+2000…) is escaped byte by byte too: the bytes that
/// begin those characters' encodings are escaped whatever follows, which keeps the rule one
/// of bytes and the result plain ASCII for them. Other non-ASCII text stays readable.
fn is_unicode_space_start(byte: u8) -> bool {
    matches!(byte, 0xC2 | 0xE1 | 0xE2 | 0xE3)
}

fn escape(text: &str, mark: u8, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte.is_ascii() {
            if keep(byte) {
                out.push(char::from(byte));
            } else {
                push_escaped(&mut out, mark, byte);
            }
            i += 1;
            continue;
        }
        // A whole non-ASCII character: kept when its first byte may be, else every byte of it
        // escaped (so the output stays valid UTF-8 either way).
        let len = utf8_len(byte);
        let end = (i + len).min(bytes.len());
        if keep(byte) && mark == b'%' {
            out.push_str(&text[i..end]);
        } else {
            for b in &bytes[i..end] {
                push_escaped(&mut out, mark, *b);
            }
        }
        i = end;
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn push_escaped(out: &mut String, mark: u8, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(char::from(mark));
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

fn unescape(text: &str, mark: u8) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == mark {
            let high = hex_value(*bytes.get(i + 1)?)?;
            let low = hex_value(*bytes.get(i + 2)?)?;
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The subjects of one cluster, under its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// Subjects under `prefix` (checked by the config: tokens of letters, digits, `_`, `-`).
    pub fn new(prefix: &str) -> Self {
        Subjects {
            prefix: prefix.to_owned(),
        }
    }

    /// `<prefix>.msg.<endpoint>.<kind>`: every message an endpoint received.
    pub fn message(&self, endpoint: &str, kind: &str) -> String {
        format!(
            "{}.msg.{}.{}",
            self.prefix,
            escape_token(endpoint),
            escape_token(kind)
        )
    }

    /// `<prefix>.msg.>`: every endpoint's messages.
    pub fn all_messages(&self) -> String {
        format!("{}.msg.>", self.prefix)
    }

    /// `<prefix>.state.>`: every endpoint's state changes.
    pub fn all_states(&self) -> String {
        format!("{}.state.>", self.prefix)
    }

    /// The endpoint and kind of a message subject, unescaped.
    pub fn parse_message(&self, subject: &str) -> Option<(String, String)> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".msg.")?;
        let (endpoint, kind) = rest.split_once('.')?;
        if kind.contains('.') {
            return None;
        }
        Some((unescape_token(endpoint)?, unescape_token(kind)?))
    }

    /// `<prefix>.state.<endpoint>`: the endpoint's state changes.
    pub fn state(&self, endpoint: &str) -> String {
        format!("{}.state.{}", self.prefix, escape_token(endpoint))
    }

    /// `<prefix>.send.<endpoint>`: requests to send a message through the endpoint's owner.
    pub fn send(&self, endpoint: &str) -> String {
        format!("{}.send.{}", self.prefix, escape_token(endpoint))
    }

    /// `<prefix>.status`: every member answers with its endpoints' status.
    pub fn status(&self) -> String {
        format!("{}.status", self.prefix)
    }

    /// The name of bucket `what` (`members`, `leases`, `config`): the prefix with its dots as
    /// underscores (bucket names allow no dots), then `_` and `what`.
    pub fn bucket(&self, what: &str) -> String {
        format!("{}_{what}", self.prefix.replace('.', "_"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_name_is_its_own_token() {
        assert_eq!(escape_token("binance-btc_usdt"), "binance-btc_usdt");
        assert_eq!(escape_key("binance-btc_usdt"), "binance-btc_usdt");
    }

    #[test]
    fn separators_wildcards_and_whitespace_are_escaped() {
        assert_eq!(escape_token("a.b"), "a%2Eb");
        assert_eq!(escape_token("*>"), "%2A%3E");
        assert_eq!(escape_token("price update\t"), "price%20update%09");
        assert_eq!(escape_token("100%"), "100%25");
        assert_eq!(escape_token(""), "%");
        assert_eq!(escape_key("devices:42.x"), "devices=3A42=2Ex");
    }

    #[test]
    fn every_escaped_token_reads_back_as_it_was() {
        for text in [
            "",
            "a",
            "a.b.c",
            "*",
            ">",
            " ",
            "%",
            "%25",
            "=",
            "x y\nz",
            "ünïcode",
            "nb\u{a0}sp",
            "em\u{2003}space",
            "日本",
            "devices:42",
            "%",
        ] {
            let token = escape_token(text);
            assert!(!token.is_empty());
            assert!(
                !token.contains(['.', '*', '>', ' ', '\t', '\n', '\u{a0}', '\u{2003}']),
                "{token:?}"
            );
            assert_eq!(unescape_token(&token).as_deref(), Some(text), "{token:?}");
            let key = escape_key(text);
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_/=".contains(&b))
            );
            assert_eq!(unescape_key(&key).as_deref(), Some(text), "{key:?}");
        }
    }

    #[test]
    fn a_token_that_was_not_escaped_by_the_rule_is_refused() {
        assert_eq!(unescape_token("a%2"), None);
        assert_eq!(unescape_token("a%zz"), None);
        assert_eq!(unescape_token("%FF"), None, "not UTF-8");
    }

    #[test]
    fn message_subjects_parse_back_into_endpoint_and_kind() {
        let subjects = Subjects::new("acme.wsherd");
        let subject = subjects.message("feed.eu", "trade");
        assert_eq!(subject, "acme.wsherd.msg.feed%2Eeu.trade");
        assert_eq!(
            subjects.parse_message(&subject),
            Some(("feed.eu".to_owned(), "trade".to_owned()))
        );
        assert_eq!(subjects.parse_message("acme.wsherd.msg.x.y.z"), None);
        assert_eq!(subjects.parse_message("other.msg.x.y"), None);
        assert_eq!(subjects.bucket("leases"), "acme_wsherd_leases");
        assert_eq!(subjects.all_messages(), "acme.wsherd.msg.>");
    }
}
