//! Endpoint names.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The name of an endpoint: lower-case ASCII letters, digits, `_` and `-`.
///
/// Lower case because the `config` crate lower-cases keys from the environment, so
/// `WSHERD__ENDPOINTS__BINANCE__URL` can only ever name `binance`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointName(Arc<str>);

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
            None => Ok(EndpointName(Arc::from(name))),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
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
        &self.0
    }
}

impl AsRef<str> for EndpointName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for EndpointName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for EndpointName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for EndpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for EndpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
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
}
