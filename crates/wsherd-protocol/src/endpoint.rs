//! Endpoint names.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Names up to this many bytes are stored inline.
const INLINE: usize = 30;

/// The name of an endpoint: lower-case ASCII letters, digits, `_` and `-`.
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
    /// Checks and wraps `name`.
    pub fn new(name: &str) -> Result<Self, InvalidEndpointName> {
        let why = if name.is_empty() {
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
        };
        match why {
            Some(why) => Err(InvalidEndpointName {
                name: name.to_owned(),
                why,
            }),
            None => Ok(EndpointName(Self::store(name))),
        }
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
