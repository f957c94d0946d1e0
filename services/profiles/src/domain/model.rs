//! The customer and the records around it.
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::{AttributeKey, Email, Locale, Phone, Tag, TimeZone};

pub use rapport_usecase::Tenant;
use rapport_usecase::{str_enum, uuid_id};

uuid_id!(
    /// Id of a customer (`customers/{id}`).
    CustomerId
);
uuid_id!(
    /// Id of a consent ledger entry.
    ConsentEventId
);
uuid_id!(
    /// Id of a lifecycle history entry.
    LifecycleEventId
);
uuid_id!(
    /// Id of a merge record.
    MergeRecordId
);
uuid_id!(
    /// Id of an erasure receipt.
    ErasureReceiptId
);

/// Interaction channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email.
    Email,
    /// Voice.
    Phone,
    /// Live chat.
    LiveChat,
    /// SMS.
    Sms,
    /// Social networks.
    Social,
    /// Review sites.
    ReviewSite,
    /// In person.
    InPerson,
    /// Community forums and public web comments.
    Community,
    /// In-app messages and web widgets.
    InApp,
}

str_enum!(Channel { Email => "email", Phone => "phone", LiveChat => "live_chat", Sms => "sms", Social => "social", ReviewSite => "review_site", InPerson => "in_person", Community => "community", InApp => "in_app" });

/// What a customer consents to be contacted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentPurpose {
    /// Service messages.
    Service,
    /// Marketing.
    Marketing,
    /// Surveys.
    Surveys,
    /// Loyalty program.
    Loyalty,
}

/// A consent decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    /// Agreed.
    Granted,
    /// Withdrawn or refused.
    Revoked,
}

/// Stage in the interaction cycle; the order is the cycle's order, so "the
/// furthest stage" is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStage {
    /// Knows of the business.
    Awareness,
    /// Evaluating.
    Consideration,
    /// Bought or signed up.
    Conversion,
    /// Comes back.
    Retention,
    /// Recommends the business.
    Advocacy,
}

/// Lifecycle of the record itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerState {
    /// Live.
    Active,
    /// Merged into another customer.
    Merged,
    /// Personal data erased.
    Erased,
}

str_enum!(ConsentPurpose { Service => "service", Marketing => "marketing", Surveys => "surveys", Loyalty => "loyalty" });
str_enum!(ConsentStatus { Granted => "granted", Revoked => "revoked" });
str_enum!(LifecycleStage { Awareness => "awareness", Consideration => "consideration", Conversion => "conversion", Retention => "retention", Advocacy => "advocacy" });
str_enum!(CustomerState { Active => "active", Merged => "merged", Erased => "erased" });

/// One email address of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailEntry {
    /// The address.
    pub address: Email,
    /// Free-form label.
    pub label: String,
    /// Default address.
    pub primary: bool,
    /// Ownership verified.
    pub verified: bool,
}

/// One phone number of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneEntry {
    /// E.164 number.
    pub number: Phone,
    /// Free-form label.
    pub label: String,
    /// Default number.
    pub primary: bool,
}

/// How a customer is known on a channel other than email and phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelIdentity {
    /// The channel.
    pub channel: Channel,
    /// Network or site within the channel, lower case, may be empty.
    pub provider: String,
    /// Handle as given; compared case-insensitively.
    pub handle: String,
}

/// Birthday with an optional year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Birthday {
    /// 1–12.
    pub month: u8,
    /// 1–31, valid for the month.
    pub day: u8,
    /// The year, when known.
    pub year: Option<u16>,
}

/// Daily window without proactive contact, minutes after midnight in the
/// customer's time zone; may cross midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// Start, minutes after midnight.
    pub start_minute: u16,
    /// End, minutes after midnight.
    pub end_minute: u16,
}

/// How and when a customer wants to be contacted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPreferences {
    /// Preferred channel.
    pub preferred_channel: Option<Channel>,
    /// Preferred language.
    pub preferred_language: Option<Locale>,
    /// Quiet hours.
    pub quiet_hours: Option<QuietHours>,
    /// No proactive contact at all.
    pub do_not_contact: bool,
}

/// A typed custom attribute value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeValue {
    /// Text.
    String(String),
    /// Whole number.
    Int(i64),
    /// Finite float.
    Double(f64),
    /// Boolean.
    Bool(bool),
    /// Point in time.
    Timestamp(DateTime<Utc>),
}

/// The client-editable part of a customer: everything personal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name.
    pub display_name: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Emails; at most one primary.
    pub emails: Vec<EmailEntry>,
    /// Phones; at most one primary.
    pub phones: Vec<PhoneEntry>,
    /// Other channel identities.
    pub identities: Vec<ChannelIdentity>,
    /// Locale.
    pub locale: Option<Locale>,
    /// Time zone.
    pub time_zone: Option<TimeZone>,
    /// Birthday.
    pub birthday: Option<Birthday>,
    /// Contact preferences.
    pub contact_preferences: ContactPreferences,
    /// Tags.
    pub tags: BTreeSet<Tag>,
    /// Custom attributes.
    pub attributes: BTreeMap<AttributeKey, AttributeValue>,
}

/// The current consent decision for one channel and purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    /// Channel.
    pub channel: Channel,
    /// Purpose.
    pub purpose: ConsentPurpose,
    /// Decision.
    pub status: ConsentStatus,
    /// Where it was captured.
    pub source: String,
    /// When the customer decided.
    pub capture_time: DateTime<Utc>,
    /// The privacy notice shown when they decided (empty: not recorded).
    /// Stored documents from before it existed read as empty.
    #[serde(default)]
    pub privacy_notice_version: String,
}

/// A customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Id.
    pub id: CustomerId,
    /// Personal data.
    pub profile: Profile,
    /// Current consent per channel × purpose, sorted by (channel, purpose).
    pub consents: Vec<ConsentState>,
    /// Lifecycle stage.
    pub lifecycle_stage: LifecycleStage,
    /// Record state.
    pub state: CustomerState,
    /// Survivor when merged.
    pub merged_into: Option<CustomerId>,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
    /// Optimistic concurrency version; the etag is derived from it.
    pub version: i64,
}

impl Customer {
    /// A customer as `CreateCustomer` makes it: a new id, version 1, active,
    /// at the start of the lifecycle, no consents yet.
    pub fn new_active(profile: Profile, now: DateTime<Utc>) -> Self {
        Self {
            id: CustomerId::generate(),
            profile,
            consents: Vec::new(),
            lifecycle_stage: LifecycleStage::Awareness,
            state: CustomerState::Active,
            merged_into: None,
            create_time: now,
            update_time: now,
            version: 1,
        }
    }

    /// The etag clients send back: the version, quoted as in HTTP.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// One consent ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEvent {
    /// Id.
    pub id: ConsentEventId,
    /// The customer.
    pub customer: CustomerId,
    /// Channel.
    pub channel: Channel,
    /// Purpose.
    pub purpose: ConsentPurpose,
    /// Decision.
    pub status: ConsentStatus,
    /// Where it was captured.
    pub source: String,
    /// Evidence text.
    pub evidence: String,
    /// When the customer decided.
    pub capture_time: DateTime<Utc>,
    /// When it was recorded.
    pub record_time: DateTime<Utc>,
    /// The privacy notice shown when they decided (empty: not recorded).
    #[serde(default)]
    pub privacy_notice_version: String,
}

/// One lifecycle history entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// Id.
    pub id: LifecycleEventId,
    /// The customer.
    pub customer: CustomerId,
    /// Stage before; `None` for the creation entry.
    pub from_stage: Option<LifecycleStage>,
    /// Stage after.
    pub to_stage: LifecycleStage,
    /// Why.
    pub reason: String,
    /// When.
    pub create_time: DateTime<Utc>,
}

/// Record of a merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeRecord {
    /// Id.
    pub id: MergeRecordId,
    /// Survivor.
    pub survivor: CustomerId,
    /// Merged (now a tombstone).
    pub merged: CustomerId,
    /// When.
    pub create_time: DateTime<Utc>,
}

/// Receipt of an erasure; holds no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// Id.
    pub id: ErasureReceiptId,
    /// The erased customer.
    pub customer: CustomerId,
    /// When.
    pub erase_time: DateTime<Utc>,
    /// What was removed.
    pub erased_fields: Vec<String>,
    /// The services that confirmed erasing their part, in order; profiles
    /// first, at the erasure itself.
    #[serde(default)]
    pub confirmations: Vec<ErasureConfirmation>,
    /// The other services that must confirm: every service holding customer
    /// data when the receipt was issued.
    #[serde(default)]
    pub awaited: Vec<String>,
    /// When the last awaited service confirmed.
    #[serde(default)]
    pub complete_time: Option<DateTime<Utc>>,
}

/// What a service's confirmation did to a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// Recorded; the receipt is now complete.
    Completed,
    /// Recorded; others are still pending.
    Recorded,
    /// This service had confirmed already (a repeated event).
    Again,
    /// The receipt does not await this service (it held no customer data
    /// when the receipt was issued): nothing recorded.
    NotAwaited,
}

impl ErasureReceipt {
    /// Records `service`'s confirmation at `now`; the receipt completes
    /// with the last awaited one.
    pub fn confirm(&mut self, service: &str, now: DateTime<Utc>) -> Confirmed {
        if self.confirmations.iter().any(|c| c.service == service) {
            return Confirmed::Again;
        }
        if !self.awaited.iter().any(|s| s == service) {
            return Confirmed::NotAwaited;
        }
        self.confirmations.push(ErasureConfirmation {
            service: service.to_owned(),
            confirm_time: now,
        });
        if self.pending().is_empty() {
            self.complete_time = Some(now);
            Confirmed::Completed
        } else {
            Confirmed::Recorded
        }
    }

    /// The awaited services that have not confirmed yet.
    pub fn pending(&self) -> Vec<String> {
        self.awaited
            .iter()
            .filter(|s| !self.confirmations.iter().any(|c| &c.service == *s))
            .cloned()
            .collect()
    }
}

/// One service's confirmation that it erased its part of a customer's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureConfirmation {
    /// The service's name on the bus (`profiles`, `conversations`).
    pub service: String,
    /// When it was recorded.
    pub confirm_time: DateTime<Utc>,
}

/// The profiles service's own name on the bus, the first to confirm every
/// erasure (in the erasure's own transaction).
pub const THIS_SERVICE: &str = "profiles";

/// A change of a customer's birthday timer (see [`super::birthday`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BirthdayTimer {
    /// Fire at `due`, the start of the birthday of `year`.
    Schedule {
        /// Whose.
        customer: CustomerId,
        /// The year of the birthday.
        year: i32,
        /// Local midnight of the day.
        due: DateTime<Utc>,
    },
    /// No birthday to wait for any more.
    Cancel {
        /// Whose.
        customer: CustomerId,
    },
}

/// Domain events, written to the outbox with the change. Ids and facts only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// A customer was created.
    Created {
        /// Who.
        customer: CustomerId,
        /// Initial stage.
        stage: LifecycleStage,
    },
    /// Fields changed.
    Updated {
        /// Who.
        customer: CustomerId,
        /// Changed field paths.
        changed_paths: Vec<String>,
    },
    /// Two customers merged.
    Merged {
        /// Survivor.
        survivor: CustomerId,
        /// Tombstone.
        merged: CustomerId,
        /// The record.
        record: MergeRecordId,
    },
    /// Personal data erased.
    Erased {
        /// Who.
        customer: CustomerId,
        /// The receipt.
        receipt: ErasureReceiptId,
    },
    /// Every awaited service confirmed an erasure.
    ErasureCompleted {
        /// Who.
        customer: CustomerId,
        /// The receipt.
        receipt: ErasureReceiptId,
    },
    /// A customer's birthday began (local midnight).
    BirthdayReached {
        /// Who.
        customer: CustomerId,
        /// Which year's.
        year: i32,
    },
    /// A consent decision was recorded.
    ConsentChanged {
        /// Who.
        customer: CustomerId,
        /// Channel.
        channel: Channel,
        /// Purpose.
        purpose: ConsentPurpose,
        /// Decision.
        status: ConsentStatus,
    },
    /// The lifecycle stage changed.
    StageChanged {
        /// Who.
        customer: CustomerId,
        /// Before.
        from: LifecycleStage,
        /// After.
        to: LifecycleStage,
    },
}

impl DomainEvent {
    /// The customer the event is about, its subject: the survivor of a merge.
    pub fn customer(&self) -> CustomerId {
        match self {
            Self::Created { customer, .. }
            | Self::Updated { customer, .. }
            | Self::Erased { customer, .. }
            | Self::ErasureCompleted { customer, .. }
            | Self::BirthdayReached { customer, .. }
            | Self::ConsentChanged { customer, .. }
            | Self::StageChanged { customer, .. } => *customer,
            Self::Merged { survivor, .. } => *survivor,
        }
    }
}
