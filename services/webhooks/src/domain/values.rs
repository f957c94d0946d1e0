//! Validated values: a webhook URL, a list of event type patterns, a
//! signing secret. Each is parsed once, at the edge, and cannot hold an
//! invalid value afterwards.
use std::{fmt, net::IpAddr};

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Most event type patterns per subscription.
pub const MAX_EVENT_TYPES: usize = 50;
/// Longest event type pattern, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// Where deliveries are POSTed: an absolute `https` URL (or `http` where
/// allowed) without credentials or fragment. Which addresses its host may
/// reach is checked apart (the host may resolve differently later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookUrl(url::Url);

/// The host of a webhook URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A name to resolve.
    Domain(&'a str),
    /// An address literal (`https://203.0.113.7/`, `https://[2001:db8::1]/`).
    Ip(IpAddr),
}

impl WebhookUrl {
    /// Parses a URL a client sent; `allow_http` admits plain `http`.
    pub fn parse(raw: &str, allow_http: bool) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("is required".to_owned());
        }
        if raw.len() > MAX_URL_LEN {
            return Err(format!("must be at most {MAX_URL_LEN} characters"));
        }
        let url = url::Url::parse(raw).map_err(|_| "must be an absolute URL".to_owned())?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            _ => return Err("must be an https URL".to_owned()),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials".to_owned());
        }
        if url.fragment().is_some() {
            return Err("must not have a fragment".to_owned());
        }
        if url.host().is_none() {
            return Err("must name a host".to_owned());
        }
        Ok(Self(url))
    }

    /// The URL as it is stored and shown.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether deliveries go over TLS.
    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    /// The host to connect to.
    pub fn host(&self) -> Host<'_> {
        match self.0.host() {
            Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => Host::Domain(name),
            // `parse` refuses URLs without a host.
            None => Host::Domain(""),
        }
    }

    /// The port to connect to (the scheme's default when none is given).
    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }

    /// The `Host` header: the host, and the port when it is not the
    /// scheme's default.
    pub fn authority(&self) -> String {
        let host = match self.host() {
            Host::Domain(name) => name.to_owned(),
            Host::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        };
        match self.0.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }

    /// The request target: path and query.
    pub fn path_and_query(&self) -> String {
        match self.0.query() {
            Some(q) => format!("{}?{q}", self.0.path()),
            None => self.0.path().to_owned(),
        }
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for WebhookUrl {
    type Error = String;

    /// A stored URL: it passed [`WebhookUrl::parse`] when written, under a
    /// configuration that may have allowed `http`.
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw, true)
    }
}

impl From<WebhookUrl> for String {
    fn from(url: WebhookUrl) -> Self {
        url.0.into()
    }
}

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

/// The prefix of a signing secret (Standard Webhooks).
const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a new secret (the spec asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// The secret deliveries are signed with: `whsec_` and the base64 of the
/// HMAC key. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SigningSecret(Vec<u8>);

impl SigningSecret {
    /// A new random secret.
    pub fn generate() -> Self {
        Self(rand::random::<[u8; SECRET_BYTES]>().to_vec())
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let key = raw
            .strip_prefix(SECRET_PREFIX)
            .and_then(|b| B64.decode(b).ok())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| "not a whsec_ secret".to_owned())?;
        Ok(Self(key))
    }

    /// The secret as shown once to the partner.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }

    /// Its last four characters, to tell secrets apart.
    pub fn hint(&self) -> String {
        let s = self.expose();
        s[s.len().saturating_sub(4)..].to_owned()
    }

    /// The `webhook-signature` of a delivery (Standard Webhooks, scheme
    /// `v1`): the base64 HMAC-SHA256, keyed with the secret's bytes, of
    /// `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

impl TryFrom<String> for SigningSecret {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<SigningSecret> for String {
    fn from(s: SigningSecret) -> Self {
        s.expose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Violations;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        // https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_whsec_base64_and_never_debug_printed() {
        let s = SigningSecret::generate();
        let shown = s.expose();
        assert!(shown.starts_with("whsec_"), "{shown}");
        assert_eq!(B64.decode(&shown[6..]).unwrap().len(), 32);
        assert_eq!(SigningSecret::parse(&shown).unwrap(), s);
        assert_eq!(s.hint(), shown[shown.len() - 4..]);
        assert!(!format!("{s:?}").contains(&shown[6..]));
        assert_ne!(SigningSecret::generate(), s);
        for bad in ["", "whsec_", "sk_abc", "whsec_!!!"] {
            assert!(SigningSecret::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_must_be_https_absolute_and_without_credentials() {
        let ok = WebhookUrl::parse("https://hooks.example.com:8443/in?x=1", false).unwrap();
        assert_eq!(ok.authority(), "hooks.example.com:8443");
        assert_eq!(ok.path_and_query(), "/in?x=1");
        assert_eq!(ok.port(), 8443);
        assert!(ok.is_https());
        let default_port = WebhookUrl::parse("https://Hooks.Example.com/", false).unwrap();
        assert_eq!(
            (default_port.authority().as_str(), default_port.port()),
            ("hooks.example.com", 443)
        );
        assert_eq!(
            WebhookUrl::parse("http://[::1]:8080/x", true)
                .unwrap()
                .authority(),
            "[::1]:8080"
        );
        // Numeric host spellings are normalized, so address checks see
        // the address.
        assert_eq!(
            WebhookUrl::parse("https://2130706433/", false)
                .unwrap()
                .host(),
            Host::Ip("127.0.0.1".parse().unwrap())
        );
        for (bad, allow_http) in [
            ("", true),
            ("hooks.example.com/x", true),
            ("http://hooks.example.com/", false),
            ("ftp://hooks.example.com/", true),
            ("https://user:pw@hooks.example.com/", true),
            ("https://hooks.example.com/#frag", true),
            ("file:///etc/passwd", true),
        ] {
            assert!(WebhookUrl::parse(bad, allow_http).is_err(), "{bad}");
        }
        assert!(
            WebhookUrl::parse(&format!("https://a.example/{}", "x".repeat(2048)), false).is_err()
        );
    }

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
