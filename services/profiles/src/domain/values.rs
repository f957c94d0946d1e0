//! Validated value types. Each `parse` accepts what a person would type and
//! returns the canonical form, or a short reason for the field violation.
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_value {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The canonical string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_value!(
    /// An email address as given; compared case-insensitively.
    Email
);
string_value!(
    /// A phone number in E.164 form (`+14155550123`).
    Phone
);
string_value!(
    /// A BCP-47 language tag (`fr-CA`).
    Locale
);
string_value!(
    /// An IANA time zone name (`Europe/Paris`).
    TimeZone
);
string_value!(
    /// A lower-case tag.
    Tag
);
string_value!(
    /// A custom attribute key.
    AttributeKey
);

impl Email {
    /// Longest accepted address (RFC 5321 path limit).
    pub const MAX_LEN: usize = 254;

    /// Parses an address: `local@domain.tld`, no spaces, sane lengths.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("must not be empty");
        }
        if s.len() > Self::MAX_LEN {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err("not an email address: missing '@'");
        };
        let domain_ok = domain.len() >= 3
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && local.chars().all(|c| !c.is_whitespace() && !c.is_control());
        if !local_ok || !domain_ok {
            return Err("not an email address");
        }
        Ok(Self(s.to_owned()))
    }

    /// The form identities are matched on: lower case.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

impl Phone {
    /// Parses a number in E.164 form. Spaces, dashes, dots and parentheses
    /// are dropped first, so `+1 (415) 555-0123` is accepted.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let Some(digits) = compact.strip_prefix('+') else {
            return Err("must be in E.164 form, starting with '+' and the country code");
        };
        if !(7..=15).contains(&digits.len())
            || !digits.chars().all(|c| c.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err("must be in E.164 form: '+' then 7 to 15 digits, not starting with 0");
        }
        Ok(Self(compact))
    }
}

impl Locale {
    /// Parses a BCP-47 tag: a 2–3 letter language (or 4–8 letters), then
    /// subtags of 1–8 letters or digits separated by '-'.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        const WHY: &str = "must be a BCP-47 language tag such as `en` or `fr-CA`";
        let s = raw.trim();
        if s.len() > 35 {
            return Err(WHY);
        }
        let mut parts = s.split('-');
        let lang = parts.next().unwrap_or_default();
        if !(2..=3).contains(&lang.len()) || !lang.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(WHY);
        }
        for sub in parts {
            if sub.is_empty() || sub.len() > 8 || !sub.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(WHY);
            }
        }
        Ok(Self(s.to_owned()))
    }
}

impl TimeZone {
    /// Parses an IANA time zone name.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim();
        s.parse::<chrono_tz::Tz>()
            .map(|tz| Self(tz.name().to_owned()))
            .map_err(|_| "unknown IANA time zone, expected e.g. `Europe/Paris`")
    }
}

impl Tag {
    /// Longest tag.
    pub const MAX_LEN: usize = 64;

    /// Parses a tag: trimmed, lower-cased, 1–64 of `a-z 0-9 - _ : .`.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err("must be 1 to 64 characters");
        }
        if !s.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | ':' | '.')
        }) {
            return Err("may contain only letters, digits, '-', '_', ':' and '.'");
        }
        Ok(Self(s))
    }
}

impl AttributeKey {
    /// Parses a key: 1–64 of `A-Z a-z 0-9 _ -`, starting with a letter. No
    /// dots: `attributes.<key>` is an update mask path.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw.starts_with(|c: char| c.is_ascii_alphabetic())
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err("keys are 1 to 64 letters, digits, '_' or '-', starting with a letter")
        }
    }
}

/// Checks a free-text field: at most `max` characters, no control characters
/// other than newlines and tabs.
pub fn text(raw: &str, max: usize) -> Result<String, String> {
    if raw.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if raw
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("must not contain control characters".to_owned());
    }
    Ok(raw.to_owned())
}

/// Parses `HH:MM` (24-hour clock) into minutes after midnight.
pub fn time_of_day(raw: &str) -> Result<u16, &'static str> {
    const WHY: &str = "must be HH:MM on a 24-hour clock";
    let (h, m) = raw.split_once(':').ok_or(WHY)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(WHY);
    }
    let h: u16 = h.parse().map_err(|_| WHY)?;
    let m: u16 = m.parse().map_err(|_| WHY)?;
    if h > 23 || m > 59 {
        return Err(WHY);
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(Email::parse("ada@example.com").is_ok());
        assert_eq!(
            Email::parse("Ada@Example.COM").unwrap().normalized(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@exa mple.com",
            "ada@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn phones_normalize_to_e164() {
        assert_eq!(
            Phone::parse("+1 (415) 555-0123").unwrap().as_str(),
            "+14155550123"
        );
        for bad in [
            "4155550123",
            "+0123456789",
            "+1",
            "+1415555012345678",
            "+1415abc0123",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn locales_and_time_zones() {
        for ok in ["en", "fr-CA", "zh-Hant-TW", "es-419"] {
            assert!(Locale::parse(ok).is_ok(), "{ok:?} refused");
        }
        for bad in ["", "english", "en_US", "e", "en--US"] {
            assert!(Locale::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            TimeZone::parse("Europe/Paris").unwrap().as_str(),
            "Europe/Paris"
        );
        assert!(TimeZone::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn tags_keys_and_times() {
        assert_eq!(Tag::parse(" VIP ").unwrap().as_str(), "vip");
        assert!(Tag::parse("has space").is_err());
        assert!(AttributeKey::parse("plan_tier").is_ok());
        assert!(AttributeKey::parse("a.b").is_err());
        assert_eq!(time_of_day("22:30").unwrap(), 22 * 60 + 30);
        assert!(time_of_day("24:00").is_err());
        assert!(time_of_day("7:00").is_err());
    }
}
