//! The one contact policy: may we contact this customer now, on this
//! channel, for this purpose? Every service asks it at send time
//! (`CheckContactPolicy`); none re-implements consent, quiet hours or
//! do-not-contact. A pure function of the customer and the time, so the
//! rules are tested here without a database or a clock.
use chrono::{DateTime, Duration, NaiveTime, Timelike as _, Utc};

use super::model::CustomerId;
use super::model::{Channel, ConsentPurpose, ConsentStatus, Customer, CustomerState};
use super::values::Locale;

/// Why contact is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No granted consent for the channel and purpose (a missing record
    /// counts as refused for marketing, surveys and loyalty).
    NoConsent,
    /// The customer asked for no proactive contact.
    DoNotContact,
    /// Inside the customer's quiet hours: try again at `next_allowed_time`.
    QuietHours,
    /// The customer has no address on the channel.
    NoAddressOnChannel,
    /// The customer was erased.
    Erased,
    /// The customer was merged into `survivor`: ask about that one.
    Merged,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether to contact now.
    pub allowed: bool,
    /// Why not, when not.
    pub refusal: Option<Refusal>,
    /// When contact becomes allowed (the end of the quiet hours).
    pub next_allowed_time: Option<DateTime<Utc>>,
    /// The channel asked about, or the one to use when none was.
    pub channel: Option<Channel>,
    /// The customer's address on that channel (an email address, an E.164
    /// number, a handle).
    pub address: Option<String>,
    /// The language to write in.
    pub language: Option<Locale>,
    /// The survivor, when the customer was merged.
    pub survivor: Option<CustomerId>,
}

impl Decision {
    fn refused(refusal: Refusal) -> Self {
        Self {
            allowed: false,
            refusal: Some(refusal),
            next_allowed_time: None,
            channel: None,
            address: None,
            language: None,
            survivor: None,
        }
    }
}

/// Channels tried, in this order, when neither the caller nor the customer
/// names one: the first the customer has an address on.
const FALLBACK: [Channel; 4] = [
    Channel::Email,
    Channel::Sms,
    Channel::Phone,
    Channel::Social,
];

/// The customer's address on `channel`: the primary (else first) email or
/// number, or the first identity on that channel.
fn address(c: &Customer, channel: Channel) -> Option<String> {
    let p = &c.profile;
    match channel {
        Channel::Email => p
            .emails
            .iter()
            .find(|e| e.primary)
            .or(p.emails.first())
            .map(|e| e.address.as_str().to_owned()),
        Channel::Phone | Channel::Sms => p
            .phones
            .iter()
            .find(|e| e.primary)
            .or(p.phones.first())
            .map(|e| e.number.as_str().to_owned()),
        other => p
            .identities
            .iter()
            .find(|i| i.channel == other)
            .map(|i| i.handle.clone()),
    }
}

/// Decides for `customer` at `now`. `channel`: the one the caller will use,
/// or `None` to be told which. `default_zone`: the tenant's time zone, for
/// a customer without one.
pub fn decide(
    customer: &Customer,
    channel: Option<Channel>,
    purpose: ConsentPurpose,
    now: DateTime<Utc>,
    default_zone: chrono_tz::Tz,
) -> Decision {
    match customer.state {
        CustomerState::Erased => return Decision::refused(Refusal::Erased),
        CustomerState::Merged => {
            return Decision {
                survivor: customer.merged_into,
                ..Decision::refused(Refusal::Merged)
            };
        }
        CustomerState::Active => {}
    }
    let prefs = &customer.profile.contact_preferences;
    let channel = channel.or(prefs.preferred_channel).or_else(|| {
        FALLBACK
            .into_iter()
            .find(|c| address(customer, *c).is_some())
    });
    let language = prefs
        .preferred_language
        .clone()
        .or_else(|| customer.profile.locale.clone());
    let mut decision = Decision {
        allowed: true,
        refusal: None,
        next_allowed_time: None,
        channel,
        address: channel.and_then(|c| address(customer, c)),
        language,
        survivor: None,
    };
    let refuse = |mut d: Decision, why: Refusal| {
        d.allowed = false;
        d.refusal = Some(why);
        d
    };
    if decision.address.is_none() {
        return refuse(decision, Refusal::NoAddressOnChannel);
    }
    // A service message answers the customer's own case: they asked.
    if purpose == ConsentPurpose::Service {
        return decision;
    }
    if prefs.do_not_contact {
        return refuse(decision, Refusal::DoNotContact);
    }
    let granted = customer.consents.iter().any(|s| {
        Some(s.channel) == decision.channel
            && s.purpose == purpose
            && s.status == ConsentStatus::Granted
    });
    if !granted {
        return refuse(decision, Refusal::NoConsent);
    }
    if let Some(quiet) = &prefs.quiet_hours {
        let zone = super::zone::zone_of(customer, default_zone);
        if let Some(end) = quiet_until(now, zone, quiet.start_minute, quiet.end_minute) {
            decision.next_allowed_time = Some(end);
            return refuse(decision, Refusal::QuietHours);
        }
    }
    decision
}

/// When `now` falls in the quiet hours [start, end) of local time in `zone`
/// (wrapping midnight when start > end), the instant they end; else `None`.
fn quiet_until(
    now: DateTime<Utc>,
    zone: chrono_tz::Tz,
    start_minute: u16,
    end_minute: u16,
) -> Option<DateTime<Utc>> {
    if start_minute == end_minute {
        return None;
    }
    let local = now.with_timezone(&zone);
    let minute = (local.time().num_seconds_from_midnight() / 60) as u16;
    let inside = if start_minute < end_minute {
        (start_minute..end_minute).contains(&minute)
    } else {
        minute >= start_minute || minute < end_minute
    };
    if !inside {
        return None;
    }
    let end = NaiveTime::from_num_seconds_from_midnight_opt(u32::from(end_minute) * 60, 0)?;
    let mut day = local.date_naive();
    if minute >= end_minute {
        // The quiet hours began this evening and end tomorrow morning.
        day += Duration::days(1);
    }
    // A local end time skipped by a daylight-saving jump ends the quiet
    // hours at the first instant after it.
    super::zone::instant_at(zone, day.and_time(end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{
        ConsentState, ContactPreferences, EmailEntry, PhoneEntry, Profile, QuietHours,
    };
    use crate::domain::values::{Email, Phone, TimeZone};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn customer() -> Customer {
        let profile = Profile {
            emails: vec![EmailEntry {
                address: Email::parse("ada@example.com").unwrap(),
                label: String::new(),
                primary: true,
                verified: false,
            }],
            phones: vec![PhoneEntry {
                number: Phone::parse("+442071838750").unwrap(),
                label: String::new(),
                primary: true,
            }],
            time_zone: Some(TimeZone::parse("Europe/London").unwrap()),
            locale: Some(Locale::parse("en-GB").unwrap()),
            contact_preferences: ContactPreferences {
                quiet_hours: Some(QuietHours {
                    start_minute: 21 * 60,
                    end_minute: 8 * 60,
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut c = Customer::new_active(profile, at("2026-01-01T00:00:00Z"));
        c.consents.push(ConsentState {
            channel: Channel::Email,
            purpose: ConsentPurpose::Surveys,
            status: ConsentStatus::Granted,
            source: "test".into(),
            capture_time: at("2026-01-01T00:00:00Z"),
            privacy_notice_version: String::new(),
        });
        c
    }

    const NOON: &str = "2026-07-01T11:00:00Z"; // 12:00 in London (BST)

    #[test]
    fn granted_consent_outside_quiet_hours_is_allowed_with_address_and_language() {
        let d = decide(
            &customer(),
            Some(Channel::Email),
            ConsentPurpose::Surveys,
            at(NOON),
            chrono_tz::UTC,
        );
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.address.as_deref(), Some("ada@example.com"));
        assert_eq!(
            d.language.map(|l| l.as_str().to_owned()).as_deref(),
            Some("en-GB")
        );
    }

    #[test]
    fn a_missing_consent_record_refuses_marketing_surveys_and_loyalty_but_not_service() {
        for purpose in [ConsentPurpose::Marketing, ConsentPurpose::Loyalty] {
            let d = decide(
                &customer(),
                Some(Channel::Email),
                purpose,
                at(NOON),
                chrono_tz::UTC,
            );
            assert_eq!(d.refusal, Some(Refusal::NoConsent), "{purpose:?}");
        }
        let d = decide(
            &customer(),
            Some(Channel::Sms),
            ConsentPurpose::Surveys,
            at(NOON),
            chrono_tz::UTC,
        );
        assert_eq!(
            d.refusal,
            Some(Refusal::NoConsent),
            "consent is per channel"
        );
        let mut c = customer();
        c.profile.contact_preferences.do_not_contact = true;
        let d = decide(
            &c,
            Some(Channel::Sms),
            ConsentPurpose::Service,
            at("2026-07-01T23:30:00Z"),
            chrono_tz::UTC,
        );
        assert!(
            d.allowed,
            "service replies ignore consent, quiet hours and do-not-contact: {d:?}"
        );
    }

    #[test]
    fn do_not_contact_blocks_everything_proactive() {
        let mut c = customer();
        c.profile.contact_preferences.do_not_contact = true;
        let d = decide(
            &c,
            Some(Channel::Email),
            ConsentPurpose::Surveys,
            at(NOON),
            chrono_tz::UTC,
        );
        assert_eq!(d.refusal, Some(Refusal::DoNotContact));
    }

    #[test]
    fn quiet_hours_follow_the_customers_zone_and_say_when_they_end() {
        // 21:30 in London (BST, UTC+1) is 20:30 UTC: quiet until 08:00 BST.
        let d = decide(
            &customer(),
            Some(Channel::Email),
            ConsentPurpose::Surveys,
            at("2026-07-01T20:30:00Z"),
            chrono_tz::UTC,
        );
        assert_eq!(d.refusal, Some(Refusal::QuietHours));
        assert_eq!(d.next_allowed_time, Some(at("2026-07-02T07:00:00Z")));
        // 07:59 BST the next morning: still quiet, same end.
        let d = decide(
            &customer(),
            Some(Channel::Email),
            ConsentPurpose::Surveys,
            at("2026-07-02T06:59:00Z"),
            chrono_tz::UTC,
        );
        assert_eq!(d.next_allowed_time, Some(at("2026-07-02T07:00:00Z")));
        // 08:00 BST: allowed.
        let d = decide(
            &customer(),
            Some(Channel::Email),
            ConsentPurpose::Surveys,
            at("2026-07-02T07:00:00Z"),
            chrono_tz::UTC,
        );
        assert!(d.allowed);
        // No zone of its own: the tenant's.
        let mut c = customer();
        c.profile.time_zone = None;
        let d = decide(
            &c,
            Some(Channel::Email),
            ConsentPurpose::Surveys,
            at("2026-07-01T20:30:00Z"),
            chrono_tz::America::New_York,
        );
        assert!(d.allowed, "16:30 in New York");
    }

    #[test]
    fn the_channel_is_the_preferred_one_else_the_first_with_an_address() {
        let mut c = customer();
        let d = decide(&c, None, ConsentPurpose::Surveys, at(NOON), chrono_tz::UTC);
        assert_eq!(d.channel, Some(Channel::Email));
        c.profile.contact_preferences.preferred_channel = Some(Channel::Sms);
        let d = decide(&c, None, ConsentPurpose::Service, at(NOON), chrono_tz::UTC);
        assert_eq!(d.channel, Some(Channel::Sms));
        assert_eq!(d.address.as_deref(), Some("+442071838750"));
        let d = decide(
            &c,
            Some(Channel::Social),
            ConsentPurpose::Service,
            at(NOON),
            chrono_tz::UTC,
        );
        assert_eq!(d.refusal, Some(Refusal::NoAddressOnChannel));
    }

    #[test]
    fn erased_and_merged_customers_are_refused_and_merged_names_its_survivor() {
        let mut c = customer();
        c.state = CustomerState::Erased;
        let d = decide(&c, None, ConsentPurpose::Service, at(NOON), chrono_tz::UTC);
        assert_eq!(d.refusal, Some(Refusal::Erased));
        let survivor = customer().id;
        let mut c = customer();
        c.state = CustomerState::Merged;
        c.merged_into = Some(survivor);
        let d = decide(&c, None, ConsentPurpose::Service, at(NOON), chrono_tz::UTC);
        assert_eq!(d.refusal, Some(Refusal::Merged));
        assert_eq!(d.survivor, Some(survivor));
    }
}
