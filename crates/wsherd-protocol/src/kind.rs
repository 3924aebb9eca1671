//! Where a message's kind lives, and how to read it without building a JSON tree.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A caller's own kind extractor: gets the message text, returns its kind.
pub type KindFn = dyn Fn(&str) -> Option<String> + Send + Sync;

/// How to find the kind (the routing discriminator) of an inbound JSON text message.
///
/// The kind is a string or a number somewhere in the message: `{"type":"trade",…}` has kind
/// `trade` under the default rule; a Binance stream's `{"e":"aggTrade",…}` needs
/// `KindRule::field("e")`; `{"data":{"type":"book"}}` needs `KindRule::pointer("/data/type")`.
/// Numbers are turned into their decimal text, so `{"op":0}` has kind `"0"`.
#[derive(Clone)]
pub enum KindRule {
    /// A path of object keys (or array indexes) from the top of the message.
    Path(Arc<[String]>),
    /// A caller's function over the raw text.
    Custom(Arc<KindFn>),
}

impl KindRule {
    /// The kind is the top-level field `name`.
    pub fn field(name: impl Into<String>) -> Self {
        let name = name.into();
        if name == "type" {
            // The default, shared: one copy per process instead of one per endpoint.
            static TYPE: std::sync::OnceLock<Arc<[String]>> = std::sync::OnceLock::new();
            return KindRule::Path(Arc::clone(TYPE.get_or_init(|| Arc::from(vec![name]))));
        }
        KindRule::Path(Arc::from(vec![name]))
    }

    /// The kind is at a JSON pointer (RFC 6901), such as `/data/type`.
    ///
    /// A string that does not start with `/` is taken as a top-level field name, which is what
    /// the config key `kind` means.
    pub fn pointer(pointer: &str) -> Self {
        match pointer.strip_prefix('/') {
            None => Self::field(pointer),
            Some(rest) => {
                let segments: Vec<String> = rest
                    .split('/')
                    .map(|segment| segment.replace("~1", "/").replace("~0", "~"))
                    .collect();
                KindRule::Path(Arc::from(segments))
            }
        }
    }

    /// The kind is whatever `extract` returns for the message text.
    pub fn custom(extract: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        KindRule::Custom(Arc::new(extract))
    }

    /// Reads the kind of `text`.
    ///
    /// `Ok(None)` means the text is valid JSON without a kind where the rule looks (or with a
    /// kind that is neither a string nor a number); `Err` means the text is not JSON at all.
    /// The kind borrows from `text` when it holds no escapes.
    ///
    /// When the kind is the very first field of the object (as most feeds send it), it is
    /// read without scanning the rest: the rest is checked by the typed decode that follows,
    /// so a message broken after its kind is reported as failing to decode into its type.
    pub fn extract<'a>(&self, text: &'a str) -> Result<Option<Cow<'a, str>>, serde_json::Error> {
        match self {
            KindRule::Path(segments) => {
                if let [field] = &segments[..]
                    && let Some(kind) = leading_field(text, field)
                {
                    return Ok(Some(Cow::Borrowed(kind)));
                }
                let mut deserializer = serde_json::Deserializer::from_str(text);
                let leaf = PathSeed { segments }.deserialize(&mut deserializer)?;
                deserializer.end()?;
                Ok(leaf.map(Leaf::into_text))
            }
            KindRule::Custom(extract) => Ok(extract(text).map(Cow::Owned)),
        }
    }

    /// Reads the request id where this rule looks: an integer or a string, told apart (a reply
    /// whose id is the string `"7"` does not answer request `7`). `None` for text that is not
    /// JSON, has nothing there, or something else there; a custom rule's answer is a string.
    pub fn extract_id(&self, text: &str) -> Option<MessageId> {
        match self {
            KindRule::Path(segments) => {
                if let [field] = &segments[..]
                    && let Some(id) = leading_field(text, field)
                {
                    return Some(MessageId::Text(id.to_owned()));
                }
                let mut deserializer = serde_json::Deserializer::from_str(text);
                let leaf = PathSeed { segments }.deserialize(&mut deserializer).ok()?;
                deserializer.end().ok()?;
                leaf.map(|leaf| match leaf {
                    Leaf::Text(text) => MessageId::Text(text.into_owned()),
                    Leaf::Integer(digits) => MessageId::Integer(digits.into_owned()),
                })
            }
            KindRule::Custom(extract) => extract(text).map(MessageId::Text),
        }
    }
}

/// The id a request carries and its reply must carry back: an integer or a string.
///
/// The two never match each other: `Integer("7")` is the JSON number `7`, `Text("7")` the
/// string `"7"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageId {
    /// A JSON integer, as its decimal digits (with a leading `-` when negative).
    Integer(String),
    /// A JSON string.
    Text(String),
}

impl MessageId {
    /// The id of a JSON value that is an integer or a string.
    pub fn of_value(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::String(text) => Some(MessageId::Text(text.clone())),
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => {
                Some(MessageId::Integer(n.to_string()))
            }
            _ => None,
        }
    }

    /// The id as a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            MessageId::Text(text) => serde_json::Value::String(text.clone()),
            // Digits that came from a JSON integer parse back as one; were they ever not, a
            // string keeps them rather than losing the id.
            MessageId::Integer(digits) => serde_json::from_str(digits)
                .unwrap_or_else(|_| serde_json::Value::String(digits.clone())),
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageId::Integer(digits) => f.write_str(digits),
            MessageId::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// What a path leads to: a string or an integer (as its digits).
enum Leaf<'de> {
    Text(Cow<'de, str>),
    Integer(Cow<'de, str>),
}

impl<'de> Leaf<'de> {
    fn into_text(self) -> Cow<'de, str> {
        match self {
            Leaf::Text(text) | Leaf::Integer(text) => text,
        }
    }
}

impl KindRule {
    /// The kind of an already parsed message (same answers as [`KindRule::extract`]).
    pub fn extract_value(&self, value: &serde_json::Value) -> Option<String> {
        match self {
            KindRule::Path(segments) => {
                let mut current = value;
                for segment in segments.iter() {
                    current = match current {
                        serde_json::Value::Object(map) => map.get(segment)?,
                        serde_json::Value::Array(items) => {
                            items.get(segment.parse::<usize>().ok()?)?
                        }
                        _ => return None,
                    };
                }
                match current {
                    serde_json::Value::String(kind) => Some(kind.clone()),
                    serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
                    _ => None,
                }
            }
            KindRule::Custom(extract) => extract(&value.to_string()),
        }
    }
}

impl Default for KindRule {
    /// The top-level field `type`.
    fn default() -> Self {
        Self::field("type")
    }
}

impl fmt::Debug for KindRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KindRule::Path(segments) if segments.len() == 1 => {
                write!(f, "KindRule::field({:?})", segments[0])
            }
            KindRule::Path(segments) => {
                let pointer: String = segments
                    .iter()
                    .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
                    .collect();
                write!(f, "KindRule::pointer({pointer:?})")
            }
            KindRule::Custom(_) => f.write_str("KindRule::custom(..)"),
        }
    }
}

/// The string value of `field` when it is the first member of the top-level object, read
/// without parsing further. `None` whenever anything is less than plain (escapes, a number, a
/// different first field): the full parse decides then.
fn leading_field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    let (bytes, field) = (text.as_bytes(), field.as_bytes());
    if field.iter().any(|&b| b == b'"' || b == b'\\') {
        return None;
    }
    let start = compact_start(bytes, field).or_else(|| spaced_start(bytes, field))?;
    // The kind ends at its closing quote; an escape or a control character means the slow path.
    let rest = bytes.get(start..)?;
    let len = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    (rest.get(len) == Some(&b'"')).then_some(())?;
    text.get(start..start + len)
}

/// Where the kind's text starts in `{"field":"`, the compact form nearly every feed sends:
/// three prefix comparisons, before any whitespace-tolerant walk.
fn compact_start(bytes: &[u8], field: &[u8]) -> Option<usize> {
    let (name, rest) = bytes.strip_prefix(b"{\"")?.split_at_checked(field.len())?;
    same_bytes(name, field).then_some(())?;
    rest.strip_prefix(b"\":\"")?;
    Some(2 + field.len() + 3)
}

/// Whether two kinds (or field names) are the same text.
///
/// Kinds are a few bytes long, and checked once or twice per message: compared here byte by
/// byte without a call into the C library's `memcmp`, whose call and set-up cost more than
/// such a comparison (measured: two calls per message took 2 % of a feed's time).
#[inline]
pub fn same_kind(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |differ, (x, y)| differ | (x ^ y)) == 0
}

/// Where the kind's text starts in `{ "field" : "` with JSON whitespace wherever it may be.
fn spaced_start(bytes: &[u8], field: &[u8]) -> Option<usize> {
    let mut at = byte_at(bytes, after_whitespace(bytes, 0), b'{')?;
    at = byte_at(bytes, after_whitespace(bytes, at), b'"')?;
    (bytes.get(at..at + field.len()) == Some(field)).then_some(())?;
    at = byte_at(bytes, at + field.len(), b'"')?;
    at = byte_at(bytes, after_whitespace(bytes, at), b':')?;
    byte_at(bytes, after_whitespace(bytes, at), b'"')
}

/// The index after `at` when the byte there is `expected`.
fn byte_at(bytes: &[u8], at: usize, expected: u8) -> Option<usize> {
    (bytes.get(at) == Some(&expected)).then_some(at + 1)
}

/// The index of the first byte at or after `at` that is not JSON whitespace (RFC 8259 allows
/// only space, tab, line feed and carriage return).
fn after_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Walks `segments` down the document, skipping everything off the path without allocating.
struct PathSeed<'s> {
    segments: &'s [String],
}

impl<'de> DeserializeSeed<'de> for PathSeed<'_> {
    type Value = Option<Leaf<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PathSeed<'_> {
    type Value = Option<Leaf<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some((head, rest)) = self.segments.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(None);
        };
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if found.is_none() && key == head.as_str() {
                found = map.next_value_seed(PathSeed { segments: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let target = self
            .segments
            .split_first()
            .and_then(|(head, rest)| head.parse::<usize>().ok().map(|index| (index, rest)));
        let mut found = None;
        let mut index = 0usize;
        loop {
            match target {
                Some((wanted, rest)) if wanted == index => {
                    match seq.next_element_seed(PathSeed { segments: rest })? {
                        Some(kind) => found = kind,
                        None => break,
                    }
                }
                _ => {
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        break;
                    }
                }
            }
            index += 1;
        }
        Ok(found)
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(self
            .segments
            .is_empty()
            .then_some(Leaf::Text(Cow::Borrowed(value))))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(self
            .segments
            .is_empty()
            .then(|| Leaf::Text(Cow::Owned(value.to_owned()))))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(self
            .segments
            .is_empty()
            .then_some(Leaf::Text(Cow::Owned(value))))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(self
            .segments
            .is_empty()
            .then(|| Leaf::Integer(Cow::Owned(value.to_string()))))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(self
            .segments
            .is_empty()
            .then(|| Leaf::Integer(Cow::Owned(value.to_string()))))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_the_same_only_when_every_byte_and_the_length_are() {
        assert!(same_kind("trade", "trade"));
        assert!(same_kind("", ""));
        assert!(!same_kind("trade", "trades"));
        assert!(!same_kind("trade", "tradf"));
        assert!(!same_kind("Trade", "trade"));
        let long = "a".repeat(100);
        assert!(same_kind(&long, &long.clone()));
        assert!(!same_kind(&long, &format!("{}b", &long[1..])));
    }

    #[test]
    fn request_ids_are_integers_or_strings_and_never_equal_each_other() {
        let rule = KindRule::field("id");
        assert_eq!(
            rule.extract_id(r#"{"id":7,"result":1}"#),
            Some(MessageId::Integer("7".into()))
        );
        assert_eq!(
            rule.extract_id(r#"{"id":"7"}"#),
            Some(MessageId::Text("7".into()))
        );
        assert_ne!(
            rule.extract_id(r#"{"id":7}"#),
            rule.extract_id(r#"{"id":"7"}"#)
        );
        assert_eq!(
            KindRule::pointer("/meta/req").extract_id(r#"{"meta":{"req":-2}}"#),
            Some(MessageId::Integer("-2".into()))
        );
        for no_id in [
            r#"{"id":1.5}"#,
            r#"{"id":null}"#,
            r#"{"id":[1]}"#,
            r#"{"x":1}"#,
            "not json",
            r#"{"id":1"#,
            "",
        ] {
            assert_eq!(rule.extract_id(no_id), None, "{no_id}");
        }
        let huge = r#"{"id":123456789012345678901234567890}"#;
        assert_eq!(
            rule.extract_id(huge),
            None,
            "an integer past 64 bits is no id"
        );
        assert_eq!(
            MessageId::of_value(&serde_json::json!(7)).map(|id| id.to_value()),
            Some(serde_json::json!(7))
        );
    }

    fn kind(rule: &KindRule, text: &str) -> Option<String> {
        rule.extract(text).expect("valid JSON").map(Cow::into_owned)
    }

    #[test]
    fn top_level_field_default_is_type() {
        let rule = KindRule::default();
        assert_eq!(
            kind(&rule, r#"{"seq":1,"type":"trade","p":[1,2]}"#).as_deref(),
            Some("trade")
        );
        assert_eq!(kind(&rule, r#"{"kind":"trade"}"#), None);
    }

    #[test]
    fn named_field_and_numbers() {
        assert_eq!(
            kind(&KindRule::field("e"), r#"{"e":"aggTrade"}"#).as_deref(),
            Some("aggTrade")
        );
        assert_eq!(
            kind(&KindRule::field("op"), r#"{"op":0,"d":{}}"#).as_deref(),
            Some("0")
        );
        assert_eq!(
            kind(&KindRule::field("op"), r#"{"op":-3}"#).as_deref(),
            Some("-3")
        );
        assert_eq!(kind(&KindRule::field("op"), r#"{"op":1.5}"#), None);
        assert_eq!(kind(&KindRule::field("op"), r#"{"op":{"x":1}}"#), None);
    }

    #[test]
    fn borrowed_when_unescaped_owned_when_escaped() {
        let rule = KindRule::default();
        assert!(matches!(
            rule.extract(r#"{"type":"a"}"#),
            Ok(Some(Cow::Borrowed("a")))
        ));
        assert_eq!(kind(&rule, r#"{"type":"a\"b"}"#).as_deref(), Some("a\"b"));
    }

    #[test]
    fn pointer_walks_objects_and_arrays() {
        let rule = KindRule::pointer("/data/type");
        assert_eq!(
            kind(&rule, r#"{"x":[1,{"type":"no"}],"data":{"type":"book"}}"#).as_deref(),
            Some("book")
        );
        assert_eq!(kind(&rule, r#"{"data":5}"#), None);
        let rule = KindRule::pointer("/1/kind");
        assert_eq!(
            kind(&rule, r#"[{"kind":"a"},{"kind":"b"}]"#).as_deref(),
            Some("b")
        );
        assert_eq!(kind(&rule, r#"[{"kind":"a"}]"#), None);
        let rule = KindRule::pointer("/a~1b/c~0d");
        assert_eq!(kind(&rule, r#"{"a/b":{"c~d":"x"}}"#).as_deref(), Some("x"));
        assert_eq!(format!("{rule:?}"), r#"KindRule::pointer("/a~1b/c~0d")"#);
    }

    #[test]
    fn pointer_without_slash_is_a_field() {
        assert_eq!(
            kind(&KindRule::pointer("e"), r#"{"e":"x"}"#).as_deref(),
            Some("x")
        );
    }

    #[test]
    fn first_occurrence_wins_on_duplicate_keys() {
        assert_eq!(
            kind(&KindRule::default(), r#"{"type":"a","type":"b"}"#).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn malformed_json_is_an_error_not_a_missing_kind() {
        let rule = KindRule::default();
        assert!(rule.extract(r#"{"x":1,"type":"a""#).is_err());
        assert!(rule.extract(r#"{"x":1} trailing"#).is_err());
        assert!(rule.extract("not json").is_err());
        assert!(rule.extract("").is_err());
        assert!(
            rule.extract(r#"{"type":"a\"#).is_err(),
            "an escape: the full parse decides"
        );
    }

    #[test]
    fn a_leading_kind_is_read_without_parsing_the_rest() {
        let rule = KindRule::default();
        assert!(matches!(
            rule.extract(r#" { "type" : "trade", "p": [1,2]}"#),
            Ok(Some(Cow::Borrowed("trade")))
        ));
        // The rest is the typed decode's business.
        assert_eq!(
            kind(&rule, r#"{"type":"a"} trailing"#).as_deref(),
            Some("a")
        );
        // Anything unusual takes the full parse.
        assert_eq!(kind(&rule, r#"{"type":"a\"b"}"#).as_deref(), Some("a\"b"));
        assert_eq!(
            kind(&KindRule::field("op"), r#"{"op":0}"#).as_deref(),
            Some("0")
        );
        assert_eq!(
            kind(&rule, r#"{"typed":"x","type":"y"}"#).as_deref(),
            Some("y")
        );
        assert_eq!(leading_field("{\"type\":\"a\u{1}\"}", "type"), None);
        assert_eq!(leading_field(r#"{"type":"a"}"#, "ty\"pe"), None);
    }

    #[test]
    fn value_and_text_extraction_agree() {
        for (rule, text) in [
            (KindRule::default(), r#"{"type":"a","x":1}"#),
            (KindRule::field("op"), r#"{"op":3}"#),
            (
                KindRule::pointer("/data/type"),
                r#"{"data":{"type":"book"}}"#,
            ),
            (KindRule::pointer("/1/k"), r#"[{"k":"a"},{"k":"b"}]"#),
            (KindRule::default(), r#"{"type":1.5}"#),
            (KindRule::default(), r#"[1,2]"#),
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(rule.extract_value(&value), kind(&rule, text), "{text}");
        }
    }

    #[test]
    fn custom_rule() {
        let rule = KindRule::custom(|text| text.split(':').next().map(str::to_owned));
        assert_eq!(kind(&rule, "tick:42").as_deref(), Some("tick"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(KindRule::default().extract(&deep).is_err());
        let deep_obj = r#"{"a":"#.repeat(10_000);
        assert!(KindRule::pointer("/a/a/a").extract(&deep_obj).is_err());
    }
}
