//! Resources admins manage — teams, agents, canned responses: each unique
//! in its tenant by one key (a team's name, an agent's principal, a canned
//! response's shortcode), versioned, created, read, listed and updated the
//! same way, so the use-cases and storage are written once for all three.
use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};

use super::{error::Kind, model::*, rules, template};
use rapport_usecase::Violations;

/// A resource admins manage.
pub trait Managed:
    Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + std::fmt::Debug + 'static
{
    /// Which, for NotFound and for storage.
    const KIND: Kind;
    /// The request field it is sent in (`team`, `agent`, `canned_response`).
    const FIELD: &'static str;
    /// Its id.
    fn id(&self) -> uuid::Uuid;
    /// Its key, unique per tenant (normalized).
    fn key(&self) -> String;
    /// The field of the key, for ALREADY_EXISTS.
    fn key_field() -> &'static str;
    /// Its version.
    fn version(&self) -> i64;
    /// When it was created and last changed.
    fn times(&self) -> (DateTime<Utc>, DateTime<Utc>);
    /// Sets id, version and times (create: a new id and version 1).
    fn stamp(
        &mut self,
        id: Option<uuid::Uuid>,
        version: i64,
        create: DateTime<Utc>,
        now: DateTime<Utc>,
    );
    /// Reports each bad field under `prefix`.
    fn check(&self, prefix: &str, v: &mut Violations);
    /// Its resource name.
    fn name(&self) -> String;
    /// The teams it names (they must exist): each with its field path
    /// below [`Managed::FIELD`].
    fn teams(&self) -> Vec<(String, TeamId)> {
        Vec::new()
    }
    /// The business calendars it names (they must exist): each with its
    /// field path below [`Managed::FIELD`].
    fn calendars(&self) -> Vec<(String, uuid::Uuid)> {
        Vec::new()
    }
    /// The etag of this version.
    fn etag(&self) -> String {
        format!("\"{}\"", self.version())
    }
}

fn check_name(name: &str, field: String, v: &mut Violations) {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > rules::MAX_NAME {
        v.add(field, "is required, at most 200 characters");
    }
}

impl Managed for Team {
    fn times(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.create_time, self.update_time)
    }
    const KIND: Kind = Kind::Team;
    const FIELD: &'static str = "team";
    fn id(&self) -> uuid::Uuid {
        self.id.0
    }
    fn key(&self) -> String {
        self.display_name.trim().to_lowercase()
    }
    fn key_field() -> &'static str {
        "display_name"
    }
    fn version(&self) -> i64 {
        self.version
    }
    fn stamp(
        &mut self,
        id: Option<uuid::Uuid>,
        version: i64,
        create: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        if let Some(id) = id {
            self.id = TeamId(id);
        }
        self.display_name = self.display_name.trim().to_owned();
        (self.version, self.create_time, self.update_time) = (version, create, now);
    }
    fn check(&self, prefix: &str, v: &mut Violations) {
        check_name(&self.display_name, format!("{prefix}.display_name"), v);
    }
    fn name(&self) -> String {
        format!("teams/{}", self.id)
    }
}

impl Managed for Agent {
    fn times(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.create_time, self.update_time)
    }
    const KIND: Kind = Kind::Agent;
    const FIELD: &'static str = "agent";
    fn id(&self) -> uuid::Uuid {
        self.id.0
    }
    fn key(&self) -> String {
        self.principal.clone()
    }
    fn key_field() -> &'static str {
        "principal"
    }
    fn version(&self) -> i64 {
        self.version
    }
    fn stamp(
        &mut self,
        id: Option<uuid::Uuid>,
        version: i64,
        create: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        if let Some(id) = id {
            self.id = AgentId(id);
        }
        self.display_name = self.display_name.trim().to_owned();
        self.teams.sort();
        self.teams.dedup();
        (self.version, self.create_time, self.update_time) = (version, create, now);
    }
    fn check(&self, prefix: &str, v: &mut Violations) {
        check_name(&self.display_name, format!("{prefix}.display_name"), v);
        let p = &self.principal;
        if p.is_empty() || p.len() > 300 || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            v.add(
                format!("{prefix}.principal"),
                "is required: `apiKeys/{id}` or `jwt:{subject}`, at most 300 characters, no spaces",
            );
        }
        if self.teams.len() > 50 {
            v.add(format!("{prefix}.teams"), "holds at most 50 teams");
        }
        if self.capacity < 0 {
            v.add(format!("{prefix}.capacity"), "must not be negative");
        }
        if self.locale.len() > 35 {
            v.add(format!("{prefix}.locale"), "is at most 35 characters");
        }
    }
    fn calendars(&self) -> Vec<(String, uuid::Uuid)> {
        self.business_calendar
            .map(|c| ("business_calendar".to_owned(), c.0))
            .into_iter()
            .collect()
    }
    fn name(&self) -> String {
        format!("agents/{}", self.id)
    }
    fn teams(&self) -> Vec<(String, TeamId)> {
        self.teams
            .iter()
            .enumerate()
            .map(|(n, t)| (format!("teams[{n}]"), *t))
            .collect()
    }
}

impl Managed for CannedResponse {
    fn times(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.create_time, self.update_time)
    }
    const KIND: Kind = Kind::CannedResponse;
    const FIELD: &'static str = "canned_response";
    fn id(&self) -> uuid::Uuid {
        self.id.0
    }
    fn key(&self) -> String {
        self.shortcode.clone()
    }
    fn key_field() -> &'static str {
        "shortcode"
    }
    fn version(&self) -> i64 {
        self.version
    }
    fn stamp(
        &mut self,
        id: Option<uuid::Uuid>,
        version: i64,
        create: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        if let Some(id) = id {
            self.id = CannedResponseId(id);
        }
        (self.version, self.create_time, self.update_time) = (version, create, now);
    }
    fn check(&self, prefix: &str, v: &mut Violations) {
        let s = &self.shortcode;
        if s.is_empty()
            || s.len() > 64
            || !s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            v.add(
                format!("{prefix}.shortcode"),
                "must be lower-case letters, digits or `-`, at most 64 characters",
            );
        }
        if self.title.chars().count() > rules::MAX_NAME {
            v.add(format!("{prefix}.title"), "is at most 200 characters");
        }
        body(&self.body, format!("{prefix}.body"), v);
        if self.variants.len() > 50 {
            v.add(format!("{prefix}.variants"), "holds at most 50 variants");
        }
        for (n, variant) in self.variants.iter().enumerate() {
            let at = format!("{prefix}.variants[{n}]");
            if !is_locale(&variant.locale) {
                v.add(
                    format!("{at}.locale"),
                    "must be a BCP 47 locale such as `fr` or `fr-CA`",
                );
            }
            body(&variant.body, format!("{at}.body"), v);
            if self.variants[..n].iter().any(|o| {
                o.locale.eq_ignore_ascii_case(&variant.locale) && o.channel == variant.channel
            }) {
                v.add(
                    format!("{at}.locale"),
                    "repeats another variant's locale and channel",
                );
            }
        }
    }
    fn name(&self) -> String {
        format!("cannedResponses/{}", self.id)
    }
}

fn body(body: &str, field: String, v: &mut Violations) {
    if body.trim().is_empty() || body.chars().count() > 10_000 {
        v.add(field, "is required, at most 10000 characters");
    } else if let Err(why) = template::check(body) {
        v.add(field, why);
    }
}

fn is_locale(l: &str) -> bool {
    let mut parts = l.split('-');
    let lang = parts.next().unwrap_or("");
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The variant of `c` to render for `locale` and `channel`: the exact
/// locale for the channel, then for every channel, then the locale's
/// language likewise; `None`: the default body.
pub fn pick_variant<'a>(
    c: &'a CannedResponse,
    locale: &str,
    channel: Option<Channel>,
) -> Option<&'a Variant> {
    if locale.is_empty() {
        return None;
    }
    let language = locale.split('-').next().unwrap_or(locale);
    let matches = |v: &Variant, l: &str, ch: Option<Channel>| {
        v.locale.eq_ignore_ascii_case(l) && v.channel == ch
    };
    let mut order = Vec::new();
    if channel.is_some() {
        order.push((locale, channel));
    }
    order.push((locale, None));
    if channel.is_some() {
        order.push((language, channel));
    }
    order.push((language, None));
    order
        .into_iter()
        .find_map(|(l, ch)| c.variants.iter().find(|v| matches(v, l, ch)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_variant_is_picked() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let v = |locale: &str, channel, body: &str| Variant {
            locale: locale.into(),
            channel,
            body: body.into(),
        };
        let c = CannedResponse {
            id: CannedResponseId::generate(),
            shortcode: "late".into(),
            title: String::new(),
            body: "default".into(),
            variants: vec![
                v("fr", None, "fr"),
                v("fr", Some(Channel::Sms), "fr sms"),
                v("fr-CA", None, "fr-CA"),
            ],
            create_time: at,
            update_time: at,
            version: 1,
        };
        let body = |l: &str, ch| pick_variant(&c, l, ch).map(|v| v.body.as_str());
        assert_eq!(body("fr-CA", Some(Channel::Sms)), Some("fr-CA"));
        assert_eq!(body("fr-FR", Some(Channel::Sms)), Some("fr sms"));
        assert_eq!(body("fr-FR", Some(Channel::Email)), Some("fr"));
        assert_eq!(body("de", None), None);
        assert_eq!(body("", None), None);
    }
}
