//! The tenant every row and every query belongs to.
use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated tenant id: 1 to 63 characters of `[a-z0-9_-]`, starting with a
/// letter or digit. Stored and serialized as the bare string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tenant(String);

impl Tenant {
    /// Parses and validates a tenant id.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        match raw.chars().next() {
            None => Err("must not be empty"),
            _ if raw.len() > 63 => Err("must be at most 63 characters"),
            Some(first) if !(first.is_ascii_lowercase() || first.is_ascii_digit()) => {
                Err("must start with a lower-case letter or digit")
            }
            _ if !raw.chars().all(valid_char) => Err("must contain only a-z, 0-9, '-' and '_'"),
            _ => Ok(Self(raw.to_owned())),
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Tenant {
    type Error = &'static str;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Tenant> for String {
    fn from(t: Tenant) -> Self {
        t.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_validated() {
        assert_eq!(Tenant::parse("acme-1").unwrap().as_str(), "acme-1");
        for bad in ["", "Acme", "-acme", "a b", "ä", &"a".repeat(64)] {
            assert!(Tenant::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(serde_json::from_str::<Tenant>("\"BAD\"").is_err());
        assert_eq!(
            serde_json::to_string(&Tenant::parse("acme").unwrap()).unwrap(),
            "\"acme\""
        );
    }
}
