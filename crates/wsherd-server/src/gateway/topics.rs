//! What a gateway session subscribed to: topics `<endpoint>/<kind>` (`*` for any endpoint or
//! any kind), `state` (every endpoint's state events) and `state/<endpoint>`.

use std::collections::{HashMap, HashSet};

/// The longest topic a client may name.
pub(crate) const MAX_TOPIC_LEN: usize = 256;

/// One topic, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    /// Messages of `kind` (`None`: any) from `endpoint` (`None`: any).
    Messages {
        endpoint: Option<String>,
        kind: Option<String>,
    },
    /// State events of `endpoint` (`None`: every endpoint).
    State { endpoint: Option<String> },
}

impl Topic {
    /// Parses `text`, or says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<Topic, String> {
        if text.is_empty() || text.len() > MAX_TOPIC_LEN {
            return Err(format!(
                "a topic is 1 to {MAX_TOPIC_LEN} bytes: <endpoint>/<kind>, state or state/<endpoint>"
            ));
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("a topic holds no whitespace or control characters".to_owned());
        }
        if text == "state" {
            return Ok(Topic::State { endpoint: None });
        }
        let Some((first, second)) = text.split_once('/') else {
            return Err(format!(
                "{text:?} is no topic: <endpoint>/<kind> (either may be *), state or state/<endpoint>"
            ));
        };
        if second.contains('/') {
            return Err(format!("{text:?} has more than one '/'"));
        }
        let part = |part: &str, what: &str| -> Result<Option<String>, String> {
            match part {
                "" => Err(format!("{text:?} names no {what}")),
                "*" => Ok(None),
                _ if part.contains('*') => Err(format!(
                    "{text:?}: '*' stands alone for any {what}, it matches no part of a name"
                )),
                _ => Ok(Some(part.to_owned())),
            }
        };
        if first == "state" {
            let endpoint = part(second, "endpoint")?;
            return Ok(Topic::State { endpoint });
        }
        Ok(Topic::Messages {
            endpoint: part(first, "endpoint")?,
            kind: part(second, "kind")?,
        })
    }
}

/// A session's topics, indexed for the question asked of every message.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    topics: HashSet<Topic>,
    /// Kinds subscribed by endpoint.
    exact: HashMap<String, HashSet<String>>,
    any_kind: HashSet<String>,
    any_endpoint: HashSet<String>,
    everything: bool,
    all_states: bool,
    states: HashSet<String>,
}

impl Subscriptions {
    /// How many topics it holds.
    pub(crate) fn len(&self) -> usize {
        self.topics.len()
    }

    /// Adds `topic`; `false` if it was there.
    #[cfg(test)]
    pub(crate) fn add(&mut self, topic: Topic) -> bool {
        self.add_all([topic])
    }

    /// Removes `topic`; `false` if it was not there.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, topic: &Topic) -> bool {
        self.remove_all([topic])
    }

    /// How many of `topics` it does not hold yet.
    pub(crate) fn new_among<'t>(&self, topics: impl IntoIterator<Item = &'t Topic>) -> usize {
        let unique: HashSet<&Topic> = topics.into_iter().collect();
        unique.iter().filter(|t| !self.topics.contains(**t)).count()
    }

    /// Adds `topics`, indexing once; whether anything changed.
    pub(crate) fn add_all(&mut self, topics: impl IntoIterator<Item = Topic>) -> bool {
        let mut changed = false;
        for topic in topics {
            changed |= self.topics.insert(topic);
        }
        if changed {
            self.reindex();
        }
        changed
    }

    /// Removes `topics`, indexing once; whether anything changed.
    pub(crate) fn remove_all<'t>(&mut self, topics: impl IntoIterator<Item = &'t Topic>) -> bool {
        let mut changed = false;
        for topic in topics {
            changed |= self.topics.remove(topic);
        }
        if changed {
            self.reindex();
        }
        changed
    }

    fn reindex(&mut self) {
        let mut index = Subscriptions::default();
        for topic in &self.topics {
            match topic {
                Topic::Messages {
                    endpoint: Some(endpoint),
                    kind: Some(kind),
                } => {
                    index
                        .exact
                        .entry(endpoint.clone())
                        .or_default()
                        .insert(kind.clone());
                }
                Topic::Messages {
                    endpoint: Some(endpoint),
                    kind: None,
                } => {
                    index.any_kind.insert(endpoint.clone());
                }
                Topic::Messages {
                    endpoint: None,
                    kind: Some(kind),
                } => {
                    index.any_endpoint.insert(kind.clone());
                }
                Topic::Messages {
                    endpoint: None,
                    kind: None,
                } => index.everything = true,
                Topic::State { endpoint: None } => index.all_states = true,
                Topic::State {
                    endpoint: Some(endpoint),
                } => {
                    index.states.insert(endpoint.clone());
                }
            }
        }
        index.topics = std::mem::take(&mut self.topics);
        *self = index;
    }

    /// Whether a message of `kind` from `endpoint` goes to this session.
    pub(crate) fn wants(&self, endpoint: &str, kind: &str) -> bool {
        self.everything
            || self.any_kind.contains(endpoint)
            || self.any_endpoint.contains(kind)
            || self
                .exact
                .get(endpoint)
                .is_some_and(|kinds| kinds.contains(kind))
    }

    /// Whether `endpoint`'s state events go to this session.
    pub(crate) fn wants_state(&self, endpoint: &str) -> bool {
        self.all_states || self.states.contains(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribed(topics: &[&str]) -> Subscriptions {
        let mut subs = Subscriptions::default();
        for topic in topics {
            subs.add(Topic::parse(topic).unwrap());
        }
        subs
    }

    #[test]
    fn topics_name_an_endpoint_and_a_kind_each_possibly_any() {
        let subs = subscribed(&["binance/trade", "*/quote", "kraken/*"]);
        assert!(subs.wants("binance", "trade"));
        assert!(!subs.wants("binance", "book"));
        assert!(subs.wants("coinbase", "quote"));
        assert!(subs.wants("kraken", "anything"));
        assert!(!subs.wants("coinbase", "trade"));
        assert!(!subs.wants_state("binance"));
        assert!(subscribed(&["*/*"]).wants("x", "y"));
    }

    #[test]
    fn state_topics_name_every_endpoint_or_one() {
        assert!(subscribed(&["state"]).wants_state("anything"));
        let one = subscribed(&["state/binance"]);
        assert!(one.wants_state("binance"));
        assert!(!one.wants_state("kraken"));
        assert!(!one.wants("binance", "trade"), "states are no messages");
    }

    #[test]
    fn an_unsubscribed_topic_matches_no_more() {
        let mut subs = subscribed(&["binance/trade", "*/trade"]);
        assert!(subs.remove(&Topic::parse("*/trade").unwrap()));
        assert!(!subs.wants("kraken", "trade"));
        assert!(subs.wants("binance", "trade"));
        assert!(
            !subs.remove(&Topic::parse("*/trade").unwrap()),
            "gone already"
        );
        assert_eq!(subs.len(), 1);
    }

    #[test]
    fn odd_topics_are_refused_with_a_reason() {
        for bad in [
            "",
            "binance",
            "a/b/c",
            "bin*/trade",
            "/trade",
            "binance/",
            "a b/c",
            "a/\u{7}",
            &"x".repeat(300),
        ] {
            let error = Topic::parse(bad).unwrap_err();
            assert!(!error.is_empty(), "{bad:?}");
        }
        assert_eq!(
            Topic::parse("state/*").unwrap(),
            Topic::State { endpoint: None }
        );
        assert!(
            Topic::parse("devices:42/reading").is_ok(),
            "a session's name"
        );
    }
}
