//! Pure rules: limits, identity keys, profile patches, consent, merge.
use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Datelike as _, Utc};

use super::{
    error::Violations,
    model::*,
    values::{AttributeKey, Locale, Tag, TimeZone},
};

/// Most emails per customer.
pub const MAX_EMAILS: usize = 10;
/// Most phones per customer.
pub const MAX_PHONES: usize = 10;
/// Most channel identities per customer.
pub const MAX_IDENTITIES: usize = 20;
/// Most tags per customer.
pub const MAX_TAGS: usize = 50;
/// Most custom attributes per customer.
pub const MAX_ATTRIBUTES: usize = 50;
/// Longest string attribute value.
pub const MAX_ATTRIBUTE_STRING: usize = 1024;
/// Longest display name.
pub const MAX_DISPLAY_NAME: usize = 200;
/// Longest given or family name.
pub const MAX_NAME: usize = 100;
/// Longest label.
pub const MAX_LABEL: usize = 32;
/// Longest channel handle.
pub const MAX_HANDLE: usize = 256;

/// Kinds of identity that are unique within a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// Email address.
    Email,
    /// Phone number.
    Phone,
    /// Channel identity.
    Channel,
}

impl IdentityKind {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Email => "email",
            IdentityKind::Phone => "phone",
            IdentityKind::Channel => "channel",
        }
    }
}

/// The unique key of one identity, and where it sits in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityKey {
    /// Kind.
    pub kind: IdentityKind,
    /// Unique value within (tenant, kind).
    pub value: String,
    /// What a search for the bare identity matches on.
    pub match_key: String,
    /// Field path, e.g. `customer.emails[0].address`.
    pub field: String,
}

/// Identity key of a channel identity.
pub fn channel_key(identity: &ChannelIdentity) -> (String, String) {
    let handle = identity.handle.trim().to_lowercase();
    (
        format!(
            "{}:{}:{}",
            identity.channel.as_str(),
            identity.provider,
            handle
        ),
        handle,
    )
}

/// Every unique identity of a profile, with field paths under `prefix`.
pub fn identity_keys(profile: &Profile, prefix: &str) -> Vec<IdentityKey> {
    let mut keys = Vec::new();
    for (i, e) in profile.emails.iter().enumerate() {
        let n = e.address.normalized();
        keys.push(IdentityKey {
            kind: IdentityKind::Email,
            value: n.clone(),
            match_key: n,
            field: format!("{prefix}emails[{i}].address"),
        });
    }
    for (i, p) in profile.phones.iter().enumerate() {
        keys.push(IdentityKey {
            kind: IdentityKind::Phone,
            value: p.number.as_str().to_owned(),
            match_key: p.number.as_str().to_owned(),
            field: format!("{prefix}phones[{i}].number"),
        });
    }
    for (i, c) in profile.identities.iter().enumerate() {
        let (value, match_key) = channel_key(c);
        keys.push(IdentityKey {
            kind: IdentityKind::Channel,
            value,
            match_key,
            field: format!("{prefix}identities[{i}].handle"),
        });
    }
    keys
}

/// Validates a birthday; February 29 needs a leap year or no year.
pub fn birthday(
    month: i32,
    day: i32,
    year: i32,
    now: DateTime<Utc>,
) -> Result<Birthday, &'static str> {
    if !(1..=12).contains(&month) {
        return Err("month must be 1 to 12");
    }
    if year != 0 && !(1900..=now.year()).contains(&year) {
        return Err("year must be 0 (unknown) or between 1900 and this year");
    }
    // A leap year when the year is unknown, so that February 29 is allowed.
    let check_year = if year == 0 { 2000 } else { year };
    if day < 1 || chrono::NaiveDate::from_ymd_opt(check_year, month as u32, day as u32).is_none() {
        return Err("day is not valid for the month");
    }
    Ok(Birthday {
        month: month as u8,
        day: day as u8,
        year: (year != 0).then_some(year as u16),
    })
}

/// Checks the whole-profile invariants (counts, one primary, no duplicate
/// identities, attribute sizes) and makes the first email and phone primary
/// when none is. Field paths start with `prefix` (e.g. `customer.`).
pub fn normalize_profile(profile: &mut Profile, prefix: &str, v: &mut Violations) {
    if profile.emails.len() > MAX_EMAILS {
        v.add(
            format!("{prefix}emails"),
            format!("at most {MAX_EMAILS} emails"),
        );
    }
    if profile.phones.len() > MAX_PHONES {
        v.add(
            format!("{prefix}phones"),
            format!("at most {MAX_PHONES} phones"),
        );
    }
    if profile.identities.len() > MAX_IDENTITIES {
        v.add(
            format!("{prefix}identities"),
            format!("at most {MAX_IDENTITIES} identities"),
        );
    }
    if profile.tags.len() > MAX_TAGS {
        v.add(format!("{prefix}tags"), format!("at most {MAX_TAGS} tags"));
    }
    if profile.attributes.len() > MAX_ATTRIBUTES {
        v.add(
            format!("{prefix}attributes"),
            format!("at most {MAX_ATTRIBUTES} attributes"),
        );
    }

    let primaries: Vec<usize> = profile
        .emails
        .iter()
        .enumerate()
        .filter(|(_, e)| e.primary)
        .map(|(i, _)| i)
        .collect();
    if primaries.len() > 1 {
        v.add(
            format!("{prefix}emails[{}].primary", primaries[1]),
            "at most one email may be primary",
        );
    } else if primaries.is_empty()
        && let Some(first) = profile.emails.first_mut()
    {
        first.primary = true;
    }
    let primaries: Vec<usize> = profile
        .phones
        .iter()
        .enumerate()
        .filter(|(_, p)| p.primary)
        .map(|(i, _)| i)
        .collect();
    if primaries.len() > 1 {
        v.add(
            format!("{prefix}phones[{}].primary", primaries[1]),
            "at most one phone may be primary",
        );
    } else if primaries.is_empty()
        && let Some(first) = profile.phones.first_mut()
    {
        first.primary = true;
    }

    let mut seen = HashSet::new();
    for key in identity_keys(profile, prefix) {
        if !seen.insert((key.kind, key.value.clone())) {
            v.add(key.field, "duplicate of an earlier entry in this request");
        }
    }
}

/// One change that an update mask selects.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldUpdate {
    /// `display_name`.
    DisplayName(String),
    /// `given_name`.
    GivenName(String),
    /// `family_name`.
    FamilyName(String),
    /// `emails`.
    Emails(Vec<EmailEntry>),
    /// `phones`.
    Phones(Vec<PhoneEntry>),
    /// `identities`.
    Identities(Vec<ChannelIdentity>),
    /// `locale`.
    Locale(Option<Locale>),
    /// `time_zone`.
    TimeZone(Option<TimeZone>),
    /// `birthday`.
    Birthday(Option<Birthday>),
    /// `contact_preferences`.
    ContactPreferences(ContactPreferences),
    /// `contact_preferences.preferred_channel`.
    PreferredChannel(Option<Channel>),
    /// `contact_preferences.preferred_language`.
    PreferredLanguage(Option<Locale>),
    /// `contact_preferences.quiet_hours`.
    QuietHours(Option<QuietHours>),
    /// `contact_preferences.do_not_contact`.
    DoNotContact(bool),
    /// `tags`.
    Tags(BTreeSet<Tag>),
    /// `attributes`.
    Attributes(BTreeMap<AttributeKey, AttributeValue>),
    /// `attributes.<key>`: set, or remove when `None`.
    Attribute(AttributeKey, Option<AttributeValue>),
}

/// Applies updates in order.
pub fn apply_updates(profile: &Profile, updates: Vec<FieldUpdate>) -> Profile {
    let mut p = profile.clone();
    for u in updates {
        match u {
            FieldUpdate::DisplayName(x) => p.display_name = x,
            FieldUpdate::GivenName(x) => p.given_name = x,
            FieldUpdate::FamilyName(x) => p.family_name = x,
            FieldUpdate::Emails(x) => p.emails = x,
            FieldUpdate::Phones(x) => p.phones = x,
            FieldUpdate::Identities(x) => p.identities = x,
            FieldUpdate::Locale(x) => p.locale = x,
            FieldUpdate::TimeZone(x) => p.time_zone = x,
            FieldUpdate::Birthday(x) => p.birthday = x,
            FieldUpdate::ContactPreferences(x) => p.contact_preferences = x,
            FieldUpdate::PreferredChannel(x) => p.contact_preferences.preferred_channel = x,
            FieldUpdate::PreferredLanguage(x) => p.contact_preferences.preferred_language = x,
            FieldUpdate::QuietHours(x) => p.contact_preferences.quiet_hours = x,
            FieldUpdate::DoNotContact(x) => p.contact_preferences.do_not_contact = x,
            FieldUpdate::Tags(x) => p.tags = x,
            FieldUpdate::Attributes(x) => p.attributes = x,
            FieldUpdate::Attribute(k, Some(val)) => {
                p.attributes.insert(k, val);
            }
            FieldUpdate::Attribute(k, None) => {
                p.attributes.remove(&k);
            }
        }
    }
    p
}

/// Top-level field paths whose value differs (for `CustomerUpdated`).
pub fn changed_paths(before: &Profile, after: &Profile) -> Vec<String> {
    let mut paths = Vec::new();
    let mut check = |name: &str, changed: bool| {
        if changed {
            paths.push(name.to_owned());
        }
    };
    check("display_name", before.display_name != after.display_name);
    check("given_name", before.given_name != after.given_name);
    check("family_name", before.family_name != after.family_name);
    check("emails", before.emails != after.emails);
    check("phones", before.phones != after.phones);
    check("identities", before.identities != after.identities);
    check("locale", before.locale != after.locale);
    check("time_zone", before.time_zone != after.time_zone);
    check("birthday", before.birthday != after.birthday);
    check(
        "contact_preferences",
        before.contact_preferences != after.contact_preferences,
    );
    check("tags", before.tags != after.tags);
    check("attributes", before.attributes != after.attributes);
    paths
}

/// Records a decision in the current consent: it replaces the current one for
/// its channel × purpose unless that one was captured later. Returns whether
/// the current consent changed.
pub fn apply_consent(consents: &mut Vec<ConsentState>, decision: ConsentState) -> bool {
    match consents
        .iter_mut()
        .find(|c| c.channel == decision.channel && c.purpose == decision.purpose)
    {
        Some(current) if current.capture_time > decision.capture_time => false,
        Some(current) => {
            let changed = *current != decision;
            *current = decision;
            changed
        }
        None => {
            consents.push(decision);
            consents.sort_by_key(|c| (c.channel, c.purpose));
            true
        }
    }
}

/// The survivor's profile after absorbing `merged`: the survivor wins every
/// conflict; its empty fields are filled from the merged profile; identities,
/// tags and attributes are united. `do_not_contact` is kept if either says so,
/// the cautious reading of two conflicting wishes.
pub fn merge_profiles(survivor: &Profile, merged: &Profile) -> Profile {
    let mut p = survivor.clone();
    let fill = |dst: &mut String, src: &String| {
        if dst.is_empty() {
            dst.clone_from(src);
        }
    };
    fill(&mut p.display_name, &merged.display_name);
    fill(&mut p.given_name, &merged.given_name);
    fill(&mut p.family_name, &merged.family_name);
    if p.locale.is_none() {
        p.locale.clone_from(&merged.locale);
    }
    if p.time_zone.is_none() {
        p.time_zone.clone_from(&merged.time_zone);
    }
    if p.birthday.is_none() {
        p.birthday = merged.birthday;
    }
    let (sp, mp) = (&mut p.contact_preferences, &merged.contact_preferences);
    if sp.preferred_channel.is_none() {
        sp.preferred_channel = mp.preferred_channel;
    }
    if sp.preferred_language.is_none() {
        sp.preferred_language.clone_from(&mp.preferred_language);
    }
    if sp.quiet_hours.is_none() {
        sp.quiet_hours = mp.quiet_hours;
    }
    sp.do_not_contact |= mp.do_not_contact;

    for e in &merged.emails {
        if !p
            .emails
            .iter()
            .any(|x| x.address.normalized() == e.address.normalized())
        {
            p.emails.push(EmailEntry {
                primary: p.emails.is_empty(),
                ..e.clone()
            });
        }
    }
    for ph in &merged.phones {
        if !p.phones.iter().any(|x| x.number == ph.number) {
            p.phones.push(PhoneEntry {
                primary: p.phones.is_empty(),
                ..ph.clone()
            });
        }
    }
    for c in &merged.identities {
        if !p
            .identities
            .iter()
            .any(|x| channel_key(x).0 == channel_key(c).0)
        {
            p.identities.push(c.clone());
        }
    }
    p.tags.extend(merged.tags.iter().cloned());
    for (k, val) in &merged.attributes {
        p.attributes.entry(k.clone()).or_insert_with(|| val.clone());
    }
    p
}

/// Current consent after a merge: the latest decision per channel × purpose.
pub fn merge_consents(a: &[ConsentState], b: &[ConsentState]) -> Vec<ConsentState> {
    let mut out = a.to_vec();
    for decision in b {
        apply_consent(&mut out, decision.clone());
    }
    out
}

/// Lower-case text that free-text search matches against.
pub fn search_text(profile: &Profile) -> String {
    let mut parts: Vec<String> = vec![
        profile.display_name.to_lowercase(),
        profile.given_name.to_lowercase(),
        profile.family_name.to_lowercase(),
    ];
    parts.extend(profile.emails.iter().map(|e| e.address.normalized()));
    for p in &profile.phones {
        parts.push(p.number.as_str().to_owned());
        parts.push(p.number.as_str().trim_start_matches('+').to_owned());
    }
    parts.extend(profile.identities.iter().map(|c| c.handle.to_lowercase()));
    parts.retain(|p| !p.is_empty());
    parts.join("\n")
}

/// Field names that an erasure clears, for the receipt.
pub const ERASED_FIELDS: &[&str] = &[
    "display_name",
    "given_name",
    "family_name",
    "emails",
    "phones",
    "identities",
    "locale",
    "time_zone",
    "birthday",
    "contact_preferences",
    "tags",
    "attributes",
    "consents.source",
    "consent_events.source",
    "consent_events.evidence",
    "lifecycle_events.reason",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::values::Email;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn email(a: &str) -> EmailEntry {
        EmailEntry {
            address: Email::parse(a).unwrap(),
            label: String::new(),
            primary: false,
            verified: false,
        }
    }

    fn consent(status: ConsentStatus, at: i64) -> ConsentState {
        ConsentState {
            channel: Channel::Email,
            purpose: ConsentPurpose::Marketing,
            status,
            source: "form".into(),
            capture_time: t(at),
            privacy_notice_version: String::new(),
        }
    }

    #[test]
    fn older_consent_decision_does_not_override_newer() {
        let mut current = vec![consent(ConsentStatus::Revoked, 200)];
        assert!(!apply_consent(
            &mut current,
            consent(ConsentStatus::Granted, 100)
        ));
        assert_eq!(current[0].status, ConsentStatus::Revoked);
        assert!(apply_consent(
            &mut current,
            consent(ConsentStatus::Granted, 300)
        ));
        assert_eq!(current[0].status, ConsentStatus::Granted);
    }

    #[test]
    fn merge_keeps_survivor_values_and_unites_identities() {
        let mut survivor = Profile {
            display_name: "Ada".into(),
            emails: vec![email("ada@example.com")],
            ..Default::default()
        };
        survivor.emails[0].primary = true;
        survivor.attributes.insert(
            AttributeKey::parse("plan").unwrap(),
            AttributeValue::String("gold".into()),
        );
        let mut merged = Profile {
            display_name: "A. Lovelace".into(),
            given_name: "Ada".into(),
            emails: vec![email("ADA@example.com"), email("ada@work.example")],
            ..Default::default()
        };
        merged.attributes.insert(
            AttributeKey::parse("plan").unwrap(),
            AttributeValue::String("free".into()),
        );
        merged
            .attributes
            .insert(AttributeKey::parse("ref").unwrap(), AttributeValue::Int(7));
        merged.tags.insert(Tag::parse("vip").unwrap());
        let p = merge_profiles(&survivor, &merged);
        assert_eq!(p.display_name, "Ada");
        assert_eq!(p.given_name, "Ada");
        assert_eq!(
            p.emails.len(),
            2,
            "the same address in another case is one identity"
        );
        assert_eq!(p.emails.iter().filter(|e| e.primary).count(), 1);
        assert_eq!(
            p.attributes[&AttributeKey::parse("plan").unwrap()],
            AttributeValue::String("gold".into())
        );
        assert_eq!(p.attributes.len(), 2);
        assert!(p.tags.contains(&Tag::parse("vip").unwrap()));
    }

    #[test]
    fn merge_consents_keeps_latest_and_stage_order_is_the_cycle() {
        let merged = merge_consents(
            &[consent(ConsentStatus::Granted, 100)],
            &[consent(ConsentStatus::Revoked, 150)],
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].status, ConsentStatus::Revoked);
        assert!(LifecycleStage::Advocacy > LifecycleStage::Retention);
        assert!(LifecycleStage::Consideration > LifecycleStage::Awareness);
    }

    #[test]
    fn normalize_sets_one_primary_and_flags_duplicates() {
        let mut p = Profile {
            emails: vec![email("a@example.com"), email("A@example.com")],
            ..Default::default()
        };
        let mut v = Violations::default();
        normalize_profile(&mut p, "customer.", &mut v);
        assert!(p.emails[0].primary);
        assert_eq!(v.0.len(), 1);
        assert_eq!(v.0[0].0, "customer.emails[1].address");
    }

    #[test]
    fn birthdays() {
        let now = t(1_790_000_000);
        assert!(birthday(2, 29, 0, now).is_ok());
        assert!(birthday(2, 29, 2001, now).is_err());
        assert!(birthday(2, 30, 0, now).is_err());
        assert!(birthday(13, 1, 0, now).is_err());
        assert_eq!(
            birthday(12, 10, 1815, now),
            Err("year must be 0 (unknown) or between 1900 and this year")
        );
    }
}
