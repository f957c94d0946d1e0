//! Validated values: a webhook URL, a list of event type patterns, a
//! signing secret. Each is parsed once, at the edge, and cannot hold an
//! invalid value afterwards.
pub use rapport_usecase::webhook::{SigningSecret, WebhookUrl};
use serde::{Deserialize, Serialize};

/// Most event type patterns per subscription.
pub const MAX_EVENT_TYPES: usize = 50;
/// Longest event type pattern, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// One event type pattern: a full type name, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTypePattern {
    /// Exactly this type, `rapport.profiles.v1.CustomerCreated`.
    Exact(String),
    /// Every type starting with this (`rapport.profiles.v1.` for
    /// `rapport.profiles.v1.*`; empty for `*`).
    Prefix(String),
}

impl EventTypePattern {
    /// Parses one pattern: dot-separated segments of letters, digits and
    /// `_`, the last of which may be `*`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if raw.len() > MAX_EVENT_TYPE_LEN {
            return Err(format!("must be at most {MAX_EVENT_TYPE_LEN} characters"));
        }
        let (stem, wildcard) = match raw.strip_suffix('*') {
            Some("") => return Ok(Self::Prefix(String::new())),
            Some(stem) => (stem.strip_suffix('.').ok_or_else(shape)?, true),
            None => (raw, false),
        };
        let segment_ok =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !stem.split('.').all(segment_ok) {
            return Err(shape());
        }
        Ok(if wildcard {
            Self::Prefix(format!("{stem}."))
        } else {
            Self::Exact(raw.to_owned())
        })
    }

    /// Whether `event_type` matches.
    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            Self::Exact(t) => t == event_type,
            Self::Prefix(p) => event_type.starts_with(p.as_str()),
        }
    }

    /// The pattern as written.
    pub fn as_string(&self) -> String {
        match self {
            Self::Exact(t) => t.clone(),
            Self::Prefix(p) => format!("{p}*"),
        }
    }
}

fn shape() -> String {
    "must be an event type such as `rapport.profiles.v1.CustomerCreated`, or a prefix ending in `.*` such as `rapport.profiles.v1.*`".to_owned()
}

/// The event types of a subscription: at least one pattern, no duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct EventTypes(Vec<EventTypePattern>);

impl EventTypes {
    /// Parses the patterns a client sent, each of which must name (or
    /// match) one of `known`, the event types that exist. Violations are
    /// recorded under `path` (`webhook_subscription.event_types`) and
    /// `path[i]`.
    pub fn parse(
        raw: &[String],
        known: &[String],
        path: &str,
        v: &mut super::Violations,
    ) -> Option<Self> {
        if raw.is_empty() {
            v.add(path, "at least one event type is required");
            return None;
        }
        if raw.len() > MAX_EVENT_TYPES {
            v.add(path, format!("at most {MAX_EVENT_TYPES} event types"));
            return None;
        }
        let before = v.0.len();
        let mut patterns = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let field = format!("{path}[{i}]");
            let Some(p) = v.take(&field, EventTypePattern::parse(r)) else {
                continue;
            };
            if raw[..i].contains(r) {
                v.add(field, "is a duplicate");
            } else if !known.iter().any(|k| p.matches(k)) {
                v.add(
                    field,
                    match p {
                        EventTypePattern::Exact(_) => "is not an event type",
                        EventTypePattern::Prefix(_) => "matches no event type",
                    },
                );
            } else {
                patterns.push(p);
            }
        }
        (v.0.len() == before).then_some(Self(patterns))
    }

    /// Whether an event of `event_type` is wanted.
    pub fn matches(&self, event_type: &str) -> bool {
        self.0.iter().any(|p| p.matches(event_type))
    }

    /// The patterns as written.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(EventTypePattern::as_string).collect()
    }
}

impl TryFrom<Vec<String>> for EventTypes {
    type Error = String;

    /// Stored patterns: valid when written (the known types may have
    /// changed since, which only means a pattern matches nothing).
    fn try_from(raw: Vec<String>) -> Result<Self, String> {
        raw.iter()
            .map(|r| EventTypePattern::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl From<EventTypes> for Vec<String> {
    fn from(t: EventTypes) -> Self {
        t.to_strings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Violations;

    #[test]
    fn event_type_patterns() {
        let known: Vec<String> = [
            "rapport.profiles.v1.CustomerCreated",
            "rapport.profiles.v1.CustomerErased",
        ]
        .map(str::to_owned)
        .to_vec();
        let parse = |raw: &[&str]| {
            let mut v = Violations::default();
            let raw: Vec<String> = raw.iter().map(|s| (*s).to_owned()).collect();
            (EventTypes::parse(&raw, &known, "t", &mut v), v)
        };
        let (types, v) = parse(&["rapport.profiles.v1.CustomerCreated"]);
        assert!(v.is_empty());
        let types = types.unwrap();
        assert!(types.matches("rapport.profiles.v1.CustomerCreated"));
        assert!(!types.matches("rapport.profiles.v1.CustomerErased"));

        let (types, _) = parse(&["rapport.profiles.v1.*"]);
        let types = types.unwrap();
        assert!(types.matches("rapport.profiles.v1.CustomerErased"));
        assert!(!types.matches("rapport.profilesx.v1.CustomerErased"));
        assert_eq!(types.to_strings(), ["rapport.profiles.v1.*"]);
        assert!(parse(&["*"]).0.unwrap().matches("rapport.anything.v1.X"));

        let (none, v) = parse(&[]);
        assert!(none.is_none());
        assert_eq!(v.0[0].0, "t");
        let (none, v) = parse(&[
            "rapport.profiles.v1.CustomerCreated",
            "rapport.profiles.v1.CustomerCreated",
            "rapport.*.v1",
            "rapport.profiles.v1.Nope",
            "rapport.orders.*",
            "rapport..x",
            "rapport.profiles*",
        ]);
        assert!(none.is_none());
        let fields: Vec<&str> = v.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["t[1]", "t[2]", "t[3]", "t[4]", "t[5]", "t[6]"]);
    }
}
