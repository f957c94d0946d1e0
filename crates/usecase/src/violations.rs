//! Invalid input, field by field: every violation names the field path in
//! the request (`customer.emails[1].address`), so the transport can answer
//! INVALID_ARGUMENT with one `BadRequest` field violation per field.
use std::fmt;

/// (field path, description) pairs, in the order they were found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<(String, String)>);

impl Violations {
    /// Records one violation.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    /// A single violation.
    pub fn one(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut v = Self::default();
        v.add(field, description);
        v
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Err(self)` when anything was recorded; each service's error type
    /// converts from `Violations`, so `v.check()?` works in its use-cases.
    pub fn check(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// Records `result`'s error under `field` and keeps going: conversions
    /// report every bad field of a request, not only the first.
    pub fn take<T>(&mut self, field: &str, result: Result<T, impl Into<String>>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(why) => {
                self.add(field, why);
                None
            }
        }
    }

    /// Like [`Violations::take`] for a field that must be set: `Ok(None)`
    /// (an UNSPECIFIED enum, an absent message) is recorded as "is required".
    pub fn required<T>(
        &mut self,
        field: &str,
        result: Result<Option<T>, impl Into<String>>,
    ) -> Option<T> {
        match self.take(field, result) {
            Some(Some(value)) => Some(value),
            Some(None) => {
                self.add(field, "is required");
                None
            }
            None => None,
        }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid argument ({} violations)", self.0.len())
    }
}

impl std::error::Error for Violations {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_field() {
        let mut v = Violations::default();
        assert_eq!(v.take::<u8>("a", Ok::<_, &str>(1)), Some(1));
        assert_eq!(v.take::<u8>("b", Err("bad")), None);
        assert_eq!(v.required::<u8>("c", Ok::<_, &str>(None)), None);
        assert_eq!(v.required::<u8>("d", Err("unknown")), None);
        assert_eq!(v.required("e", Ok::<_, &str>(Some(5u8))), Some(5));
        assert_eq!(
            v.clone().check().unwrap_err().0,
            vec![
                ("b".to_owned(), "bad".to_owned()),
                ("c".to_owned(), "is required".to_owned()),
                ("d".to_owned(), "unknown".to_owned()),
            ]
        );
        assert!(Violations::default().check().is_ok());
    }
}
