//! Protobuf ⇄ domain conversions. Input conversions validate and report every
//! bad field with its path, so invalid input becomes INVALID_ARGUMENT with
//! `BadRequest` field violations.
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rapport_proto::{profiles as pb, types::Channel as PbChannel};
use uuid::Uuid;

use crate::domain::{
    Error, Violations,
    model::*,
    rules::{self, FieldUpdate},
    values::{self, AttributeKey, Email, Locale, Phone, Tag, TimeZone},
};

pub use rapport_kit::convert::{from_ts, ts};

/// A protobuf timestamp as a time, or why not.
pub fn timestamp(t: &prost_types::Timestamp) -> Result<DateTime<Utc>, &'static str> {
    from_ts(t).ok_or("not a valid timestamp")
}

/// Parses `customers/{uuid}`.
pub fn customer_id(name: &str, field: &str, v: &mut Violations) -> Option<CustomerId> {
    match name.strip_prefix("customers/").map(Uuid::parse_str) {
        Some(Ok(id)) => Some(CustomerId(id)),
        _ => {
            v.add(
                field,
                "must be a customer resource name, `customers/{customer}`",
            );
            None
        }
    }
}

/// `customers/{id}`.
pub fn customer_name(id: CustomerId) -> String {
    format!("customers/{id}")
}

/// Channel from protobuf; `Ok(None)` for UNSPECIFIED.
pub fn channel_from_pb(raw: i32) -> Result<Option<Channel>, &'static str> {
    Ok(Some(
        match PbChannel::try_from(raw).map_err(|_| "unknown channel")? {
            PbChannel::Unspecified => return Ok(None),
            PbChannel::Email => Channel::Email,
            PbChannel::Phone => Channel::Phone,
            PbChannel::LiveChat => Channel::LiveChat,
            PbChannel::Sms => Channel::Sms,
            PbChannel::Social => Channel::Social,
            PbChannel::ReviewSite => Channel::ReviewSite,
            PbChannel::InPerson => Channel::InPerson,
            PbChannel::Community => Channel::Community,
            PbChannel::InApp => Channel::InApp,
        },
    ))
}

/// Channel to protobuf.
pub fn channel_to_pb(c: Option<Channel>) -> PbChannel {
    match c {
        None => PbChannel::Unspecified,
        Some(Channel::Email) => PbChannel::Email,
        Some(Channel::Phone) => PbChannel::Phone,
        Some(Channel::LiveChat) => PbChannel::LiveChat,
        Some(Channel::Sms) => PbChannel::Sms,
        Some(Channel::Social) => PbChannel::Social,
        Some(Channel::ReviewSite) => PbChannel::ReviewSite,
        Some(Channel::InPerson) => PbChannel::InPerson,
        Some(Channel::Community) => PbChannel::Community,
        Some(Channel::InApp) => PbChannel::InApp,
    }
}

/// Stage from protobuf; `Ok(None)` for UNSPECIFIED.
pub fn stage_from_pb(raw: i32) -> Result<Option<LifecycleStage>, &'static str> {
    use pb::LifecycleStage as S;
    Ok(Some(
        match S::try_from(raw).map_err(|_| "unknown lifecycle stage")? {
            S::Unspecified => return Ok(None),
            S::Awareness => LifecycleStage::Awareness,
            S::Consideration => LifecycleStage::Consideration,
            S::Conversion => LifecycleStage::Conversion,
            S::Retention => LifecycleStage::Retention,
            S::Advocacy => LifecycleStage::Advocacy,
        },
    ))
}

/// Stage to protobuf.
pub fn stage_to_pb(s: Option<LifecycleStage>) -> pb::LifecycleStage {
    use pb::LifecycleStage as S;
    match s {
        None => S::Unspecified,
        Some(LifecycleStage::Awareness) => S::Awareness,
        Some(LifecycleStage::Consideration) => S::Consideration,
        Some(LifecycleStage::Conversion) => S::Conversion,
        Some(LifecycleStage::Retention) => S::Retention,
        Some(LifecycleStage::Advocacy) => S::Advocacy,
    }
}

/// Purpose from protobuf; `Ok(None)` for UNSPECIFIED.
pub fn purpose_from_pb(raw: i32) -> Result<Option<ConsentPurpose>, &'static str> {
    use pb::ConsentPurpose as P;
    Ok(Some(
        match P::try_from(raw).map_err(|_| "unknown consent purpose")? {
            P::Unspecified => return Ok(None),
            P::Service => ConsentPurpose::Service,
            P::Marketing => ConsentPurpose::Marketing,
            P::Surveys => ConsentPurpose::Surveys,
            P::Loyalty => ConsentPurpose::Loyalty,
        },
    ))
}

/// Purpose to protobuf.
pub fn purpose_to_pb(p: ConsentPurpose) -> pb::ConsentPurpose {
    use pb::ConsentPurpose as P;
    match p {
        ConsentPurpose::Service => P::Service,
        ConsentPurpose::Marketing => P::Marketing,
        ConsentPurpose::Surveys => P::Surveys,
        ConsentPurpose::Loyalty => P::Loyalty,
    }
}

/// Consent status from protobuf; `Ok(None)` for UNSPECIFIED.
pub fn status_from_pb(raw: i32) -> Result<Option<ConsentStatus>, &'static str> {
    use pb::ConsentStatus as S;
    Ok(Some(
        match S::try_from(raw).map_err(|_| "unknown consent status")? {
            S::Unspecified => return Ok(None),
            S::Granted => ConsentStatus::Granted,
            S::Revoked => ConsentStatus::Revoked,
        },
    ))
}

/// Consent status to protobuf.
pub fn status_to_pb(s: ConsentStatus) -> pb::ConsentStatus {
    match s {
        ConsentStatus::Granted => pb::ConsentStatus::Granted,
        ConsentStatus::Revoked => pb::ConsentStatus::Revoked,
    }
}

/// Customer state from protobuf; `Ok(None)` for UNSPECIFIED.
pub fn state_from_pb(raw: i32) -> Result<Option<CustomerState>, &'static str> {
    use pb::CustomerState as S;
    Ok(Some(
        match S::try_from(raw).map_err(|_| "unknown customer state")? {
            S::Unspecified => return Ok(None),
            S::Active => CustomerState::Active,
            S::Merged => CustomerState::Merged,
            S::Erased => CustomerState::Erased,
        },
    ))
}

fn state_to_pb(s: CustomerState) -> pb::CustomerState {
    match s {
        CustomerState::Active => pb::CustomerState::Active,
        CustomerState::Merged => pb::CustomerState::Merged,
        CustomerState::Erased => pb::CustomerState::Erased,
    }
}

fn text_field(raw: &str, max: usize, field: String, v: &mut Violations) -> String {
    v.take(&field, values::text(raw, max)).unwrap_or_default()
}

/// A free-text field that must be set: trimmed, not blank, at most `max`
/// characters.
pub fn required_text(raw: &str, max: usize, field: &str, v: &mut Violations) -> String {
    let raw = raw.trim();
    if raw.is_empty() {
        v.add(field, "is required");
    }
    v.take(field, values::text(raw, max)).unwrap_or_default()
}

fn emails(list: &[pb::EmailAddress], p: &str, v: &mut Violations) -> Vec<EmailEntry> {
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let label = text_field(
            &e.label,
            rules::MAX_LABEL,
            format!("{p}emails[{i}].label"),
            v,
        );
        match Email::parse(&e.address) {
            Ok(address) => out.push(EmailEntry {
                address,
                label,
                primary: e.primary,
                verified: e.verified,
            }),
            Err(why) => v.add(format!("{p}emails[{i}].address"), why),
        }
    }
    out
}

fn phones(list: &[pb::PhoneNumber], p: &str, v: &mut Violations) -> Vec<PhoneEntry> {
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let label = text_field(
            &e.label,
            rules::MAX_LABEL,
            format!("{p}phones[{i}].label"),
            v,
        );
        match Phone::parse(&e.number) {
            Ok(number) => out.push(PhoneEntry {
                number,
                label,
                primary: e.primary,
            }),
            Err(why) => v.add(format!("{p}phones[{i}].number"), why),
        }
    }
    out
}

fn identities(list: &[pb::ChannelIdentity], p: &str, v: &mut Violations) -> Vec<ChannelIdentity> {
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let prefix = format!("{p}identities[{i}].");
        if let Ok(Some(Channel::Email | Channel::Phone)) = channel_from_pb(c.channel) {
            v.add(
                format!("{prefix}channel"),
                "use `emails` or `phones` for email and phone identities",
            );
            // Its provider and handle are still checked: every bad field
            // of a request is reported at once.
            channel_identity(c, &prefix, v);
            continue;
        }
        out.extend(channel_identity(c, &prefix, v));
    }
    out
}

/// A channel identity (`{prefix}channel`, `provider`, `handle`): the channel
/// is required, the provider at most 64 of a-z, 0-9, '-', '_' and '.', the
/// handle 1 to [`rules::MAX_HANDLE`] characters.
pub fn channel_identity(
    c: &pb::ChannelIdentity,
    prefix: &str,
    v: &mut Violations,
) -> Option<ChannelIdentity> {
    let channel = v.required(&format!("{prefix}channel"), channel_from_pb(c.channel));
    let provider = c.provider.trim().to_lowercase();
    if provider.len() > 64
        || !provider.chars().all(|ch| {
            ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '-' | '_' | '.')
        })
    {
        v.add(
            format!("{prefix}provider"),
            "must be at most 64 of a-z, 0-9, '-', '_' and '.'",
        );
    }
    let handle = c.handle.trim();
    // Counted as stored: lower-cased, which can lengthen a handle ('İ' is
    // two characters in lower case) past what passed as typed.
    if handle.is_empty()
        || handle.chars().count() > rules::MAX_HANDLE
        || handle.to_lowercase().chars().count() > rules::MAX_HANDLE
        || handle.chars().any(char::is_control)
    {
        v.add(
            format!("{prefix}handle"),
            format!(
                "must be 1 to {} characters without control characters",
                rules::MAX_HANDLE
            ),
        );
    }
    Some(ChannelIdentity {
        channel: channel?,
        provider,
        handle: handle.to_owned(),
    })
}

fn opt_value<T>(
    raw: &str,
    field: String,
    parse: fn(&str) -> Result<T, &'static str>,
    v: &mut Violations,
) -> Option<T> {
    if raw.is_empty() {
        return None;
    }
    v.take(&field, parse(raw))
}

fn birthday(
    b: Option<&pb::Birthday>,
    p: &str,
    now: DateTime<Utc>,
    v: &mut Violations,
) -> Option<Birthday> {
    let b = b?;
    v.take(
        &format!("{p}birthday"),
        rules::birthday(b.month, b.day, b.year, now),
    )
}

fn quiet_hours(q: Option<&pb::QuietHours>, field: &str, v: &mut Violations) -> Option<QuietHours> {
    let q = q?;
    let start = v.take(&format!("{field}.start"), values::time_of_day(&q.start));
    let end = v.take(&format!("{field}.end"), values::time_of_day(&q.end));
    match (start, end) {
        (Some(s), Some(e)) if s == e => {
            v.add(format!("{field}.end"), "must differ from start");
            None
        }
        (Some(start_minute), Some(end_minute)) => Some(QuietHours {
            start_minute,
            end_minute,
        }),
        _ => None,
    }
}

fn preferred_channel(raw: i32, field: String, v: &mut Violations) -> Option<Channel> {
    v.take(&field, channel_from_pb(raw)).flatten()
}

fn preferences(
    c: Option<&pb::ContactPreferences>,
    p: &str,
    v: &mut Violations,
) -> ContactPreferences {
    let Some(c) = c else {
        return ContactPreferences::default();
    };
    let f = format!("{p}contact_preferences");
    ContactPreferences {
        preferred_channel: preferred_channel(
            c.preferred_channel,
            format!("{f}.preferred_channel"),
            v,
        ),
        preferred_language: opt_value(
            &c.preferred_language,
            format!("{f}.preferred_language"),
            Locale::parse,
            v,
        ),
        quiet_hours: quiet_hours(c.quiet_hours.as_ref(), &format!("{f}.quiet_hours"), v),
        do_not_contact: c.do_not_contact,
    }
}

fn tags(list: &[String], p: &str, v: &mut Violations) -> BTreeSet<Tag> {
    let mut out = BTreeSet::new();
    for (i, t) in list.iter().enumerate() {
        match Tag::parse(t) {
            Ok(tag) => {
                out.insert(tag);
            }
            Err(why) => v.add(format!("{p}tags[{i}]"), why),
        }
    }
    out
}

fn attribute_value(
    a: &pb::AttributeValue,
    field: &str,
    v: &mut Violations,
) -> Option<AttributeValue> {
    use pb::attribute_value::Kind;
    match &a.kind {
        None => {
            v.add(field, "exactly one value must be set");
            None
        }
        Some(Kind::StringValue(s)) => v
            .take(field, values::text(s, rules::MAX_ATTRIBUTE_STRING))
            .map(AttributeValue::String),
        Some(Kind::IntValue(i)) => Some(AttributeValue::Int(*i)),
        Some(Kind::DoubleValue(d)) if d.is_finite() => Some(AttributeValue::Double(*d)),
        Some(Kind::DoubleValue(_)) => {
            v.add(field, "must be a finite number");
            None
        }
        Some(Kind::BoolValue(b)) => Some(AttributeValue::Bool(*b)),
        Some(Kind::TimestampValue(t)) => v.take(field, timestamp(t)).map(AttributeValue::Timestamp),
    }
}

fn attributes(
    map: &BTreeMap<String, pb::AttributeValue>,
    p: &str,
    v: &mut Violations,
) -> BTreeMap<AttributeKey, AttributeValue> {
    let mut out = BTreeMap::new();
    for (k, a) in map {
        let field = format!("{p}attributes.{k}");
        let key = v.take(&field, AttributeKey::parse(k));
        if let (Some(key), Some(val)) = (key, attribute_value(a, &field, v)) {
            out.insert(key, val);
        }
    }
    out
}

/// The editable part of a customer; output-only fields are ignored.
pub fn profile_from_pb(
    c: &pb::Customer,
    p: &str,
    now: DateTime<Utc>,
    v: &mut Violations,
) -> Profile {
    Profile {
        display_name: text_field(
            &c.display_name,
            rules::MAX_DISPLAY_NAME,
            format!("{p}display_name"),
            v,
        ),
        given_name: text_field(&c.given_name, rules::MAX_NAME, format!("{p}given_name"), v),
        family_name: text_field(
            &c.family_name,
            rules::MAX_NAME,
            format!("{p}family_name"),
            v,
        ),
        emails: emails(&c.emails, p, v),
        phones: phones(&c.phones, p, v),
        identities: identities(&c.identities, p, v),
        locale: opt_value(&c.locale, format!("{p}locale"), Locale::parse, v),
        time_zone: opt_value(&c.time_zone, format!("{p}time_zone"), TimeZone::parse, v),
        birthday: birthday(c.birthday.as_ref(), p, now, v),
        contact_preferences: preferences(c.contact_preferences.as_ref(), p, v),
        tags: tags(&c.tags, p, v),
        attributes: attributes(&c.attributes, p, v),
    }
}

/// Paths that exist but are output only.
const OUTPUT_ONLY: &[&str] = &[
    "name",
    "consents",
    "lifecycle_stage",
    "state",
    "merged_into",
    "create_time",
    "update_time",
    "etag",
];

/// The updates an update mask selects, each validated.
pub fn updates_from_mask(
    c: &pb::Customer,
    paths: &[String],
    now: DateTime<Utc>,
    v: &mut Violations,
) -> Vec<FieldUpdate> {
    let p = "customer.";
    let mut out = Vec::new();
    if paths.is_empty() {
        v.add("update_mask", "is required: name the fields to update");
    }
    for (i, path) in paths.iter().enumerate() {
        let prefs = || c.contact_preferences.clone().unwrap_or_default();
        let update = match path.as_str() {
            "display_name" => FieldUpdate::DisplayName(text_field(
                &c.display_name,
                rules::MAX_DISPLAY_NAME,
                format!("{p}display_name"),
                v,
            )),
            "given_name" => FieldUpdate::GivenName(text_field(
                &c.given_name,
                rules::MAX_NAME,
                format!("{p}given_name"),
                v,
            )),
            "family_name" => FieldUpdate::FamilyName(text_field(
                &c.family_name,
                rules::MAX_NAME,
                format!("{p}family_name"),
                v,
            )),
            "emails" => FieldUpdate::Emails(emails(&c.emails, p, v)),
            "phones" => FieldUpdate::Phones(phones(&c.phones, p, v)),
            "identities" => FieldUpdate::Identities(identities(&c.identities, p, v)),
            "locale" => {
                FieldUpdate::Locale(opt_value(&c.locale, format!("{p}locale"), Locale::parse, v))
            }
            "time_zone" => FieldUpdate::TimeZone(opt_value(
                &c.time_zone,
                format!("{p}time_zone"),
                TimeZone::parse,
                v,
            )),
            "birthday" => FieldUpdate::Birthday(birthday(c.birthday.as_ref(), p, now, v)),
            "contact_preferences" => {
                FieldUpdate::ContactPreferences(preferences(c.contact_preferences.as_ref(), p, v))
            }
            "contact_preferences.preferred_channel" => {
                FieldUpdate::PreferredChannel(preferred_channel(
                    prefs().preferred_channel,
                    format!("{p}contact_preferences.preferred_channel"),
                    v,
                ))
            }
            "contact_preferences.preferred_language" => FieldUpdate::PreferredLanguage(opt_value(
                &prefs().preferred_language,
                format!("{p}contact_preferences.preferred_language"),
                Locale::parse,
                v,
            )),
            "contact_preferences.quiet_hours" => FieldUpdate::QuietHours(quiet_hours(
                prefs().quiet_hours.as_ref(),
                &format!("{p}contact_preferences.quiet_hours"),
                v,
            )),
            "contact_preferences.do_not_contact" => {
                FieldUpdate::DoNotContact(prefs().do_not_contact)
            }
            "tags" => FieldUpdate::Tags(tags(&c.tags, p, v)),
            "attributes" => FieldUpdate::Attributes(attributes(&c.attributes, p, v)),
            other if other.starts_with("attributes.") => {
                let raw = &other["attributes.".len()..];
                match AttributeKey::parse(raw) {
                    Ok(key) => {
                        let value = c
                            .attributes
                            .get(raw)
                            .and_then(|a| attribute_value(a, &format!("{p}attributes.{raw}"), v));
                        if c.attributes.contains_key(raw) && value.is_none() {
                            continue;
                        }
                        FieldUpdate::Attribute(key, value)
                    }
                    Err(why) => {
                        v.add(format!("update_mask.paths[{i}]"), why);
                        continue;
                    }
                }
            }
            other if OUTPUT_ONLY.contains(&other) => {
                v.add(
                    format!("update_mask.paths[{i}]"),
                    format!("`{other}` is output only"),
                );
                continue;
            }
            other => {
                v.add(
                    format!("update_mask.paths[{i}]"),
                    format!("`{other}` is not an updatable field"),
                );
                continue;
            }
        };
        out.push(update);
    }
    out
}

fn attribute_to_pb(a: &AttributeValue) -> pb::AttributeValue {
    use pb::attribute_value::Kind;
    pb::AttributeValue {
        kind: Some(match a {
            AttributeValue::String(s) => Kind::StringValue(s.clone()),
            AttributeValue::Int(i) => Kind::IntValue(*i),
            AttributeValue::Double(d) => Kind::DoubleValue(*d),
            AttributeValue::Bool(b) => Kind::BoolValue(*b),
            AttributeValue::Timestamp(t) => Kind::TimestampValue(ts(*t)),
        }),
    }
}

fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// A customer as protobuf.
pub fn customer_to_pb(c: &Customer) -> pb::Customer {
    let p = &c.profile;
    let prefs = &p.contact_preferences;
    pb::Customer {
        name: customer_name(c.id),
        display_name: p.display_name.clone(),
        given_name: p.given_name.clone(),
        family_name: p.family_name.clone(),
        emails: p
            .emails
            .iter()
            .map(|e| pb::EmailAddress {
                address: e.address.to_string(),
                label: e.label.clone(),
                primary: e.primary,
                verified: e.verified,
            })
            .collect(),
        phones: p
            .phones
            .iter()
            .map(|e| pb::PhoneNumber {
                number: e.number.to_string(),
                label: e.label.clone(),
                primary: e.primary,
            })
            .collect(),
        identities: p
            .identities
            .iter()
            .map(|i| pb::ChannelIdentity {
                channel: channel_to_pb(Some(i.channel)) as i32,
                provider: i.provider.clone(),
                handle: i.handle.clone(),
            })
            .collect(),
        locale: p
            .locale
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        time_zone: p
            .time_zone
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        birthday: p.birthday.map(|b| pb::Birthday {
            month: i32::from(b.month),
            day: i32::from(b.day),
            year: b.year.map(i32::from).unwrap_or(0),
        }),
        contact_preferences: (c.state == CustomerState::Active).then(|| pb::ContactPreferences {
            preferred_channel: channel_to_pb(prefs.preferred_channel) as i32,
            preferred_language: prefs
                .preferred_language
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            quiet_hours: prefs.quiet_hours.map(|q| pb::QuietHours {
                start: hhmm(q.start_minute),
                end: hhmm(q.end_minute),
            }),
            do_not_contact: prefs.do_not_contact,
        }),
        consents: c
            .consents
            .iter()
            .map(|s| pb::ConsentState {
                channel: channel_to_pb(Some(s.channel)) as i32,
                purpose: purpose_to_pb(s.purpose) as i32,
                status: status_to_pb(s.status) as i32,
                source: s.source.clone(),
                capture_time: Some(ts(s.capture_time)),
                privacy_notice_version: s.privacy_notice_version.clone(),
            })
            .collect(),
        lifecycle_stage: stage_to_pb(Some(c.lifecycle_stage)) as i32,
        tags: p.tags.iter().map(ToString::to_string).collect(),
        attributes: p
            .attributes
            .iter()
            .map(|(k, a)| (k.to_string(), attribute_to_pb(a)))
            .collect(),
        state: state_to_pb(c.state) as i32,
        merged_into: c.merged_into.map(customer_name).unwrap_or_default(),
        create_time: Some(ts(c.create_time)),
        update_time: Some(ts(c.update_time)),
        etag: c.etag(),
    }
}

/// A consent ledger entry as protobuf.
pub fn consent_event_to_pb(e: &ConsentEvent) -> pb::ConsentEvent {
    pb::ConsentEvent {
        name: format!("customers/{}/consentEvents/{}", e.customer, e.id),
        channel: channel_to_pb(Some(e.channel)) as i32,
        purpose: purpose_to_pb(e.purpose) as i32,
        status: status_to_pb(e.status) as i32,
        source: e.source.clone(),
        evidence: e.evidence.clone(),
        capture_time: Some(ts(e.capture_time)),
        record_time: Some(ts(e.record_time)),
        privacy_notice_version: e.privacy_notice_version.clone(),
    }
}

/// A lifecycle history entry as protobuf.
pub fn lifecycle_event_to_pb(e: &LifecycleEvent) -> pb::LifecycleEvent {
    pb::LifecycleEvent {
        name: format!("customers/{}/lifecycleEvents/{}", e.customer, e.id),
        from_stage: stage_to_pb(e.from_stage) as i32,
        to_stage: stage_to_pb(Some(e.to_stage)) as i32,
        reason: e.reason.clone(),
        create_time: Some(ts(e.create_time)),
    }
}

/// A merge record as protobuf.
pub fn merge_record_to_pb(m: &MergeRecord) -> pb::MergeRecord {
    pb::MergeRecord {
        name: format!("mergeRecords/{}", m.id),
        survivor: customer_name(m.survivor),
        merged: customer_name(m.merged),
        create_time: Some(ts(m.create_time)),
    }
}

/// A GDPR export as the JSON document it is delivered as.
pub fn export_to_pb(doc: &serde_json::Value) -> Result<pb::ExportCustomerDataResponse, Error> {
    let data = serde_json::to_vec_pretty(doc).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(pb::ExportCustomerDataResponse {
        content_type: "application/json".to_owned(),
        data,
    })
}

/// An erasure receipt as protobuf.
pub fn receipt_to_pb(r: &ErasureReceipt) -> pb::ErasureReceipt {
    pb::ErasureReceipt {
        name: format!("erasureReceipts/{}", r.id),
        customer: customer_name(r.customer),
        erase_time: Some(ts(r.erase_time)),
        erased_fields: r.erased_fields.clone(),
        confirmations: r
            .confirmations
            .iter()
            .map(|c| pb::ErasureConfirmation {
                service: c.service.clone(),
                confirm_time: Some(ts(c.confirm_time)),
            })
            .collect(),
        pending_services: r.pending(),
        complete_time: r.complete_time.map(ts),
    }
}

/// A contact decision as the API answers it.
pub fn contact_decision_to_pb(
    d: &crate::domain::contact::Decision,
) -> pb::CheckContactPolicyResponse {
    use crate::domain::contact::Refusal as R;
    use pb::ContactRefusal as P;
    let reason = match d.refusal {
        None => P::Unspecified,
        Some(R::NoConsent) => P::NoConsent,
        Some(R::DoNotContact) => P::DoNotContact,
        Some(R::QuietHours) => P::QuietHours,
        Some(R::NoAddressOnChannel) => P::NoAddressOnChannel,
        Some(R::Erased) => P::Erased,
        Some(R::Merged) => P::Merged,
    };
    pb::CheckContactPolicyResponse {
        allowed: d.allowed,
        reason: reason as i32,
        next_allowed_time: d.next_allowed_time.map(ts),
        channel: channel_to_pb(d.channel) as i32,
        address: d.address.clone().unwrap_or_default(),
        language: d
            .language
            .as_ref()
            .map(|l| l.as_str().to_owned())
            .unwrap_or_default(),
        survivor: d.survivor.map(customer_name).unwrap_or_default(),
    }
}
