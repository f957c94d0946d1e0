//! The values of signed outbound HTTP calls, as Rapport makes them to
//! partners' endpoints (webhook deliveries, channel connectors): the
//! Standard Webhooks signing secret and signature, the endpoint URL, which
//! addresses calls must never reach (SSRF), and what an attempt sends and
//! gets back. Pure values, so services' domains hold them; the client that
//! makes the calls is `rapport_kit::webhook`.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

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

    /// The Standard Webhooks headers of a call with id `id` at `timestamp`
    /// (Unix seconds) carrying `body`: `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`.
    pub fn headers(&self, id: &str, timestamp: i64, body: &str) -> Vec<(&'static str, String)> {
        vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", self.sign(id, timestamp, body)),
        ]
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

/// Why deliveries must never reach `ip`, or `None` when they may.
///
/// Always refused: addresses that are no one's endpoint (unspecified,
/// multicast, broadcast, reserved) and cloud metadata services (reached
/// over link-local or unique-local addresses, so refused even where
/// private addresses are allowed). Refused unless `allow_private`
/// (development, tests): loopback, private, link-local and shared
/// (carrier-grade NAT) addresses. IPv4 inside IPv6 (mapped, NAT64) is
/// judged as the IPv4 address it carries.
pub fn address_refusal(ip: IpAddr, allow_private: bool) -> Option<&'static str> {
    let (class, private) = match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => v4_class(v4),
            None => v6_class(v6),
        },
    };
    match class {
        Some(why) if !private || !allow_private => Some(why),
        _ => None,
    }
}

/// `(why refused, whether it is refused only as a private address)`.
fn v4_class(ip: Ipv4Addr) -> (Option<&'static str>, bool) {
    let [a, b, c, d] = ip.octets();
    match (a, b, c, d) {
        (169, 254, 169, 254) | (100, 100, 100, 200) => (Some("a cloud metadata address"), false),
        (0, ..) => (Some("an unspecified address"), false),
        (224..=239, ..) => (Some("a multicast address"), false),
        (255, 255, 255, 255) => (Some("a broadcast address"), false),
        (240..=255, ..) => (Some("a reserved address"), false),
        (127, ..) => (Some("a loopback address"), true),
        (10, ..) | (172, 16..=31, ..) | (192, 168, ..) => (Some("a private address"), true),
        (169, 254, ..) => (Some("a link-local address"), true),
        (100, 64..=127, ..) => (Some("a shared (carrier-grade NAT) address"), true),
        _ => (None, false),
    }
}

fn v6_class(ip: Ipv6Addr) -> (Option<&'static str>, bool) {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        (Some("a cloud metadata address"), false)
    } else if ip.is_unspecified() {
        (Some("an unspecified address"), false)
    } else if ip.is_multicast() {
        (Some("a multicast address"), false)
    } else if ip.is_loopback() {
        (Some("a loopback address"), true)
    } else if s[0] & 0xfe00 == 0xfc00 {
        (Some("a private address"), true)
    } else if s[0] & 0xffc0 == 0xfe80 || s[0] & 0xffc0 == 0xfec0 {
        (Some("a link-local address"), true)
    } else {
        (None, false)
    }
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, deprecated) or NAT64 (`64:ff9b::a.b.c.d`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // `::` and `::1` are IPv6's own.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        _ => None,
    }
}

/// One attempt's request: a signed POST of a delivery's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Where to.
    pub url: WebhookUrl,
    /// The Standard Webhooks headers, `(name, value)`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: String,
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The endpoint answered with this HTTP status.
    Status(u16),
    /// No answer: the address was refused, the connection or TLS failed,
    /// or the attempt timed out. The text says which (it is shown to the
    /// partner: no internal detail).
    NoAnswer(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

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
    fn internal_addresses_are_refused() {
        let public = [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:93.184.216.34",
        ];
        for a in public {
            assert_eq!(address_refusal(ip(a), false), None, "{a}");
        }
        let private = [
            "127.0.0.1",
            "127.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::7f00:1",
        ];
        for a in private {
            assert!(address_refusal(ip(a), false).is_some(), "{a}");
            assert_eq!(
                address_refusal(ip(a), true),
                None,
                "{a} with private allowed"
            );
        }
        let never = [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "100.100.100.200",
            "fd00:ec2::254",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "240.0.0.1",
        ];
        for a in never {
            assert!(address_refusal(ip(a), true).is_some(), "{a}");
        }
        assert_eq!(
            address_refusal(ip("169.254.169.254"), false),
            Some("a cloud metadata address")
        );
    }
}
