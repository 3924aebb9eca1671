//! Endpoint names.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Names up to this many bytes are stored inline.
const INLINE: usize = 30;

/// The name of an endpoint: lower-case ASCII letters, digits, `_` and `-`; or of an inbound
/// session, `<inbound>:<id>` ([`EndpointName::session`]).
///
/// Lower case because the `config` crate lower-cases keys from the environment, so
/// `WSHERD__ENDPOINTS__BINANCE__URL` can only ever name `binance`. Cheap to clone: every
/// delivery carries one, so a name of up to 30 bytes is copied rather than reference counted
/// (a shared count would be written by the connection's thread and every subscriber's).
#[derive(Clone)]
pub struct EndpointName(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Arc<str>),
}

/// The longest session id ([`EndpointName::session`]).
pub const MAX_SESSION_ID: usize = 64;

/// Why `name` cannot name an endpoint (or be the part of a session's name before the colon).
fn family_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 128 {
        Some("it is longer than 128 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        Some("only a-z, 0-9, '_' and '-' are allowed (environment keys are lower-cased)")
    } else {
        None
    }
}

/// Why `id` cannot be a session id.
fn session_id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("the session id after ':' is empty")
    } else if id.len() > MAX_SESSION_ID {
        Some("the session id after ':' is longer than 64 bytes")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~'))
    {
        Some("a session id holds only A-Z, a-z, 0-9, '_', '-', '.' and '~'")
    } else {
        None
    }
}

/// A string that is not a valid endpoint name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint name {name:?} is invalid: {why}")]
pub struct InvalidEndpointName {
    /// The rejected name.
    pub name: String,
    /// Which rule it broke.
    pub why: &'static str,
}

impl EndpointName {
    /// Checks and wraps `name`: an endpoint's name, or an inbound session's,
    /// `<inbound>:<id>` (see [`EndpointName::session`]).
    pub fn new(name: &str) -> Result<Self, InvalidEndpointName> {
        let why = match name.split_once(':') {
            None => family_problem(name),
            Some((family, id)) => family_problem(family).or_else(|| session_id_problem(id)),
        };
        match why {
            Some(why) => Err(InvalidEndpointName {
                name: name.to_owned(),
                why,
            }),
            None => Ok(EndpointName(Self::store(name))),
        }
    }

    /// The name of session `id` of inbound endpoint `inbound`: `<inbound>:<id>`
    /// (`devices:42`). An id is 1 to [`MAX_SESSION_ID`] bytes of ASCII letters (either case),
    /// digits, `_`, `-`, `.` and `~`: the characters a URL path carries unescaped.
    pub fn session(inbound: &EndpointName, id: &str) -> Result<Self, InvalidEndpointName> {
        if inbound.session_id().is_some() {
            return Err(InvalidEndpointName {
                name: format!("{inbound}:{id}"),
                why: "a session's name cannot hold sessions of its own",
            });
        }
        Self::new(&format!("{inbound}:{id}"))
    }

    /// The endpoint this name belongs to: the inbound endpoint's name for a session
    /// (`devices` for `devices:42`), the name itself otherwise. Metrics are labelled with it,
    /// so that sessions add up per inbound endpoint instead of a series each.
    pub fn family(&self) -> &str {
        let name = self.as_str();
        name.split_once(':').map_or(name, |(family, _)| family)
    }

    /// A session's id (`42` for `devices:42`); `None` for an endpoint that is no session.
    pub fn session_id(&self) -> Option<&str> {
        self.as_str().split_once(':').map(|(_, id)| id)
    }

    fn store(name: &str) -> Repr {
        let mut bytes = [0u8; INLINE];
        match (bytes.get_mut(..name.len()), u8::try_from(name.len())) {
            (Some(inline), Ok(len)) => {
                inline.copy_from_slice(name.as_bytes());
                Repr::Inline { len, bytes }
            }
            _ => Repr::Heap(Arc::from(name)),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Repr::Heap(name) => name.as_bytes(),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Inline bytes were copied whole from a checked ASCII name: always UTF-8.
            Repr::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Repr::Heap(name) => name,
        }
    }
}

impl PartialEq for EndpointName {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for EndpointName {}

impl Hash for EndpointName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that maps keyed by names can be searched with a `&str`.
        self.as_str().hash(state)
    }
}

impl PartialOrd for EndpointName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EndpointName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl TryFrom<&str> for EndpointName {
    type Error = InvalidEndpointName;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        EndpointName::new(name)
    }
}

impl Borrow<str> for EndpointName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for EndpointName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for EndpointName {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for EndpointName {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Display for EndpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for EndpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_names() {
        assert_eq!(
            EndpointName::new("binance_spot-2").unwrap().as_str(),
            "binance_spot-2"
        );
        for bad in ["", "Binance", "a b", "a.b", "é"] {
            let error = EndpointName::new(bad).unwrap_err();
            assert_eq!(error.name, bad);
            assert!(error.to_string().contains("invalid"));
        }
        assert!(EndpointName::new(&"a".repeat(129)).is_err());
    }

    #[test]
    fn a_session_is_named_after_its_inbound_endpoint_and_its_id() {
        let devices = EndpointName::new("devices").unwrap();
        let session = EndpointName::session(&devices, "Dev-42.a_b~c").unwrap();
        assert_eq!(session.as_str(), "devices:Dev-42.a_b~c");
        assert_eq!(session.family(), "devices");
        assert_eq!(session.session_id(), Some("Dev-42.a_b~c"));
        assert_eq!(devices.family(), "devices");
        assert_eq!(devices.session_id(), None);
        assert_eq!(EndpointName::new("devices:42").unwrap().family(), "devices");
        for bad in ["", "a b", "a/b", "a:b", "42%20", "é", "a\nb"] {
            let error = EndpointName::session(&devices, bad).unwrap_err();
            assert!(error.why.contains("session id"), "{bad:?}: {error}");
        }
        assert!(EndpointName::session(&devices, &"x".repeat(64)).is_ok());
        assert!(EndpointName::session(&devices, &"x".repeat(65)).is_err());
        assert!(EndpointName::session(&session, "1").is_err(), "no nesting");
        assert!(EndpointName::new("Devices:42").is_err());
        assert!(EndpointName::new(":42").is_err());
    }

    #[test]
    fn short_and_long_names_behave_alike() {
        use std::collections::{BTreeSet, HashMap};
        // Either side of the inline limit, and the longest name allowed.
        let names: Vec<String> = [1, 29, 30, 31, 128]
            .iter()
            .map(|&n| "x".repeat(n - 1) + "y")
            .collect();
        let mut by_name = HashMap::new();
        for name in &names {
            let endpoint = EndpointName::new(name).unwrap();
            assert_eq!(endpoint.as_str(), name);
            assert_eq!(endpoint, name.as_str());
            assert_eq!(endpoint.to_string(), *name);
            assert_eq!(format!("{endpoint:?}"), format!("{name:?}"));
            assert_eq!(endpoint.clone(), endpoint);
            by_name.insert(endpoint, name.len());
        }
        // Maps keyed by names answer lookups by `&str` (Hash and Eq agree with `str`'s).
        for name in &names {
            assert_eq!(by_name.get(name.as_str()), Some(&name.len()));
        }
        // Ordering is `str`'s, across the two representations.
        let sorted: BTreeSet<EndpointName> = by_name.keys().cloned().collect();
        let mut expected = names.clone();
        expected.sort();
        let got: Vec<&str> = sorted.iter().map(EndpointName::as_str).collect();
        assert_eq!(got, expected);
        assert_ne!(
            EndpointName::new("ab").unwrap(),
            EndpointName::new(&"ab".repeat(20)).unwrap()
        );
    }
}
