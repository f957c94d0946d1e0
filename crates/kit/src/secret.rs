//! A configuration value that must not leak: it redacts itself wherever a
//! configuration is shown, so no list of secret keys can miss one.
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a set secret shows as in dumps and logs.
pub const REDACTED: &str = "<redacted>";

/// A secret string (a signing key, a page-token secret). `Debug` and
/// `Serialize` show [`REDACTED`] when it is set and `""` when it is not, so
/// `--dump-config` and debug logs never print it; only [`Secret::expose`]
/// gives the value. Configuration loaders refuse one set in a file (a
/// serialized configuration shows which fields hold secrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its length in bytes (for "at least 32 characters" checks).
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() { "\"\"" } else { REDACTED })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.is_empty() { "" } else { REDACTED })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value() {
        let s = Secret::new("s3cret-s3cret");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(serde_json::to_string(&Secret::default()).unwrap(), "\"\"");
        let back: Secret = serde_json::from_str("\"s3cret-s3cret\"").unwrap();
        assert_eq!(back.expose(), "s3cret-s3cret");
    }
}
