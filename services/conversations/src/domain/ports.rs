//! What the use-cases need from other services.
use std::future::Future;

use chrono::{DateTime, Utc};

use super::{Channel, CustomerId, Error, Purpose, Tenant};

/// How a sender is known on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An email address.
    Email(String),
    /// An E.164 phone number.
    Phone(String),
    /// A handle on a channel and provider.
    Handle {
        /// The channel.
        channel: Channel,
        /// The provider within it.
        provider: String,
        /// The handle.
        handle: String,
    },
}

/// What renders a customer's name into a canned response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFacts {
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Display name.
    pub display_name: String,
    /// Preferred locale.
    pub locale: String,
    /// Tags (lower-case): SLA policies select on them.
    pub tags: Vec<String>,
}

/// Whether a proactive message may reach a customer now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// Now.
    Allowed,
    /// Not before then (the customer's quiet hours).
    Deferred(DateTime<Utc>),
    /// Not at all; why, as profiles says it (`NO_CONSENT`, `DO_NOT_CONTACT`, …).
    Refused(String),
}

/// The customer directory (the profiles service).
pub trait Customers: Send + Sync + 'static {
    /// The customer holding `identity`, created if none does: one customer
    /// however many calls race for a new identity. `display_name` is used
    /// only for a customer created now.
    fn resolve(
        &self,
        tenant: &Tenant,
        identity: &Identity,
        display_name: &str,
    ) -> impl Future<Output = Result<CustomerId, Error>> + Send;

    /// Whether a message of `purpose` may reach `customer` on `channel` now
    /// (their consent, do-not-contact and quiet hours).
    fn contact(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        channel: Channel,
        purpose: Purpose,
    ) -> impl Future<Output = Result<Contact, Error>> + Send;

    /// What canned responses may say of a customer.
    fn facts(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
    ) -> impl Future<Output = Result<CustomerFacts, Error>> + Send;
}
