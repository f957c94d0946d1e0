//! Requests → commands: each RPC's request converted, whole, into the domain
//! values its use-case takes. A conversion checks every field and reports
//! every bad one with its path in the request, so a handler has nothing left
//! to check. Rules of a single protobuf field live in [`super::convert`];
//! rules of the domain in `domain`.
use chrono::{DateTime, Utc};
use rapport_proto::profiles as pb;

use super::convert;
use crate::domain::{
    Violations,
    model::*,
    repository::{ListFilter, ListOrder, SortKey},
    rules::FieldUpdate,
    service::{self, IdentityQuery},
    values::{self, Email, Phone, Tag},
};

/// Longest search query, in characters.
const MAX_QUERY: usize = 200;
/// Longest consent source, in characters.
const MAX_SOURCE: usize = 128;
/// Longest consent evidence, in characters.
const MAX_EVIDENCE: usize = 4096;
/// Longest lifecycle change reason, in characters.
const MAX_REASON: usize = 500;

/// The customer named by one `customers/{id}` field of a request that has
/// nothing else to check (get, export, erase, a ledger's `parent`).
pub fn customer_id(name: &str, field: &str) -> Result<CustomerId, Violations> {
    let mut v = Violations::default();
    convert::customer_id(name, field, &mut v).ok_or(v)
}

/// An erasure receipt's id from its resource name.
pub fn receipt_id(name: &str, field: &str) -> Result<ErasureReceiptId, Violations> {
    match name
        .strip_prefix("erasureReceipts/")
        .map(uuid::Uuid::parse_str)
    {
        Some(Ok(id)) => Ok(ErasureReceiptId(id)),
        _ => Err(Violations::one(
            field,
            "must be an erasure receipt resource name, `erasureReceipts/{erasure_receipt}`",
        )),
    }
}

/// The longest privacy notice version accepted.
const MAX_NOTICE_VERSION: usize = 64;

/// An etag sent by the client; empty means "don't check".
fn etag(raw: &str) -> Option<String> {
    (!raw.is_empty()).then(|| raw.to_owned())
}

/// CreateCustomer: the profile to create. `now` bounds the birthday.
pub fn new_profile(
    req: &pb::CreateCustomerRequest,
    now: DateTime<Utc>,
) -> Result<Profile, Violations> {
    let customer = req
        .customer
        .as_ref()
        .ok_or_else(|| Violations::one("customer", "is required"))?;
    let mut v = Violations::default();
    let profile = convert::profile_from_pb(customer, "customer.", now, &mut v);
    v.check()?;
    Ok(profile)
}

/// UpdateCustomer: the fields its mask selects.
#[derive(Debug)]
pub struct UpdateCustomer {
    /// The customer to update.
    pub id: CustomerId,
    /// One validated update per mask path.
    pub updates: Vec<FieldUpdate>,
    /// The etag the client read, if it sent one.
    pub etag: Option<String>,
}

impl UpdateCustomer {
    /// Converts the request; `now` bounds the birthday.
    pub fn from_pb(
        req: &pb::UpdateCustomerRequest,
        now: DateTime<Utc>,
    ) -> Result<Self, Violations> {
        let customer = req
            .customer
            .as_ref()
            .ok_or_else(|| Violations::one("customer", "is required"))?;
        let mut v = Violations::default();
        let id = convert::customer_id(&customer.name, "customer.name", &mut v);
        let paths = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.as_slice())
            .unwrap_or_default();
        let updates = convert::updates_from_mask(customer, paths, now, &mut v);
        let Some(id) = id else { return Err(v) };
        v.check()?;
        Ok(Self {
            id,
            updates,
            etag: etag(&customer.etag),
        })
    }
}

/// The description of a bad `order_by`.
const ORDER_BY: &str =
    "must be one of create_time, update_time, display_name, optionally followed by `desc`";

/// Parses `order_by`: a key, optionally followed by `asc` or `desc`; empty is
/// newest first.
fn order_from(raw: &str) -> Option<ListOrder> {
    let mut parts = raw.split_whitespace();
    let key = match parts.next() {
        None => {
            return Some(ListOrder {
                key: SortKey::CreateTime,
                descending: true,
            });
        }
        Some("create_time") => SortKey::CreateTime,
        Some("update_time") => SortKey::UpdateTime,
        Some("display_name") => SortKey::DisplayName,
        Some(_) => return None,
    };
    let descending = match parts.next() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return None,
    };
    parts
        .next()
        .is_none()
        .then_some(ListOrder { key, descending })
}

/// ListCustomers: the filter and the order (page size and token are the
/// handler's).
#[derive(Debug)]
pub struct ListCustomers {
    /// Which customers.
    pub filter: ListFilter,
    /// In which order.
    pub order: ListOrder,
}

impl TryFrom<&pb::ListCustomersRequest> for ListCustomers {
    type Error = Violations;

    fn try_from(req: &pb::ListCustomersRequest) -> Result<Self, Violations> {
        let mut v = Violations::default();
        let state = v.take("state", convert::state_from_pb(req.state)).flatten();
        let stage = v
            .take(
                "lifecycle_stage",
                convert::stage_from_pb(req.lifecycle_stage),
            )
            .flatten();
        let tag = if req.tag.is_empty() {
            None
        } else {
            v.take("tag", Tag::parse(&req.tag))
        };
        let update_time_after = req
            .update_time_after
            .as_ref()
            .and_then(|t| v.take("update_time_after", convert::timestamp(t)));
        let order = v.take("order_by", order_from(&req.order_by).ok_or(ORDER_BY));
        let Some(order) = order else { return Err(v) };
        v.check()?;
        Ok(Self {
            filter: ListFilter {
                state: state.unwrap_or(CustomerState::Active),
                stage,
                tag,
                update_time_after,
            },
            order,
        })
    }
}

impl ListCustomers {
    /// What a page token of this listing is bound to: everything that shapes
    /// the result set.
    pub fn scope(&self) -> String {
        let f = &self.filter;
        format!(
            "list;state={};stage={};tag={};after={};order={:?}/{}",
            f.state.as_str(),
            f.stage.map(|s| s.as_str()).unwrap_or(""),
            f.tag.as_ref().map(|t| t.as_str()).unwrap_or(""),
            f.update_time_after
                .map(|t| t.timestamp_micros())
                .unwrap_or(0),
            self.order.key,
            self.order.descending
        )
    }
}

/// SearchCustomers: the query, trimmed.
#[derive(Debug)]
pub struct SearchCustomers {
    /// 1 to [`MAX_QUERY`] characters, no control characters.
    pub query: String,
}

impl TryFrom<&pb::SearchCustomersRequest> for SearchCustomers {
    type Error = Violations;

    fn try_from(req: &pb::SearchCustomersRequest) -> Result<Self, Violations> {
        let query = req.query.trim();
        if query.is_empty()
            || query.chars().count() > MAX_QUERY
            || query.chars().any(char::is_control)
        {
            return Err(Violations::one(
                "query",
                format!("must be 1 to {MAX_QUERY} characters"),
            ));
        }
        Ok(Self {
            query: query.to_owned(),
        })
    }
}

impl SearchCustomers {
    /// What a page token of this search is bound to.
    pub fn scope(&self) -> String {
        format!("search;q={}", self.query.to_lowercase())
    }
}

/// LookupCustomer: exactly one identity.
impl TryFrom<&pb::LookupCustomerRequest> for IdentityQuery {
    type Error = Violations;

    fn try_from(req: &pb::LookupCustomerRequest) -> Result<Self, Violations> {
        use pb::lookup_customer_request::Identity;
        match &req.identity {
            None => Err(Violations::one(
                "identity",
                "set exactly one of email, phone or channel_identity",
            )),
            Some(Identity::Email(e)) => Email::parse(e)
                .map(Self::Email)
                .map_err(|why| Violations::one("email", why)),
            Some(Identity::Phone(p)) => Phone::parse(p)
                .map(Self::Phone)
                .map_err(|why| Violations::one("phone", why)),
            Some(Identity::ChannelIdentity(c)) => {
                let mut v = Violations::default();
                let identity = convert::channel_identity(c, "channel_identity.", &mut v);
                let Some(identity) = identity else {
                    return Err(v);
                };
                v.check()?;
                Ok(Self::Channel(identity))
            }
        }
    }
}

/// ResolveCustomer: the identity, and the profile of a customer created
/// for it (the identity, primary, and the hints).
pub fn resolve(
    req: &pb::ResolveCustomerRequest,
    now: DateTime<Utc>,
) -> Result<(IdentityQuery, Profile), Violations> {
    use pb::resolve_customer_request::Identity;
    let lookup = pb::LookupCustomerRequest {
        identity: req.identity.clone().map(|i| match i {
            Identity::Email(e) => pb::lookup_customer_request::Identity::Email(e),
            Identity::Phone(p) => pb::lookup_customer_request::Identity::Phone(p),
            Identity::ChannelIdentity(c) => {
                pb::lookup_customer_request::Identity::ChannelIdentity(c)
            }
        }),
    };
    let query = IdentityQuery::try_from(&lookup)?;
    let mut customer = pb::Customer {
        display_name: req.display_name.clone(),
        locale: req.locale.clone(),
        time_zone: req.time_zone.clone(),
        ..Default::default()
    };
    match req.identity.clone() {
        Some(Identity::Email(address)) => customer.emails.push(pb::EmailAddress {
            address,
            primary: true,
            ..Default::default()
        }),
        Some(Identity::Phone(number)) => customer.phones.push(pb::PhoneNumber {
            number,
            primary: true,
            ..Default::default()
        }),
        Some(Identity::ChannelIdentity(c)) => customer.identities.push(c),
        None => {}
    }
    // Field paths as the request names them: the hints are top-level.
    let mut v = Violations::default();
    let profile = convert::profile_from_pb(&customer, "", now, &mut v);
    v.check()?;
    Ok((query, profile))
}

/// CheckContactPolicy: whom, on which channel (or which to use), why.
pub fn contact_policy(
    req: &pb::CheckContactPolicyRequest,
) -> Result<(CustomerId, Option<Channel>, ConsentPurpose), Violations> {
    let mut v = Violations::default();
    let id = convert::customer_id(&req.name, "name", &mut v);
    let channel = convert::channel_from_pb(req.channel)
        .map_err(|why| v.add("channel", why))
        .ok()
        .flatten();
    let purpose = match convert::purpose_from_pb(req.purpose) {
        Ok(Some(p)) => Some(p),
        Ok(None) => {
            v.add("purpose", "is required");
            None
        }
        Err(why) => {
            v.add("purpose", why);
            None
        }
    };
    match (id, purpose) {
        (Some(id), Some(purpose)) if v.is_empty() => Ok((id, channel, purpose)),
        _ => Err(v),
    }
}

/// MergeCustomers: who survives and who is merged into it.
#[derive(Debug)]
pub struct MergeCustomers {
    /// The customer that remains.
    pub survivor: CustomerId,
    /// The customer that becomes a tombstone.
    pub merged: CustomerId,
}

impl TryFrom<&pb::MergeCustomersRequest> for MergeCustomers {
    type Error = Violations;

    fn try_from(req: &pb::MergeCustomersRequest) -> Result<Self, Violations> {
        let mut v = Violations::default();
        let survivor = convert::customer_id(&req.survivor, "survivor", &mut v);
        let merged = convert::customer_id(&req.merged, "merged", &mut v);
        let (Some(survivor), Some(merged)) = (survivor, merged) else {
            return Err(v);
        };
        Ok(Self { survivor, merged })
    }
}

/// SetConsent: whose consent, and the decision.
#[derive(Debug)]
pub struct SetConsent {
    /// The customer deciding.
    pub id: CustomerId,
    /// The decision.
    pub consent: service::SetConsent,
}

impl TryFrom<&pb::SetConsentRequest> for SetConsent {
    type Error = Violations;

    fn try_from(req: &pb::SetConsentRequest) -> Result<Self, Violations> {
        let mut v = Violations::default();
        let id = convert::customer_id(&req.name, "name", &mut v);
        let channel = v.required("channel", convert::channel_from_pb(req.channel));
        let purpose = v.required("purpose", convert::purpose_from_pb(req.purpose));
        let status = v.required("status", convert::status_from_pb(req.status));
        let source = convert::required_text(&req.source, MAX_SOURCE, "source", &mut v);
        let evidence = v
            .take("evidence", values::text(&req.evidence, MAX_EVIDENCE))
            .unwrap_or_default();
        let capture_time = req
            .capture_time
            .as_ref()
            .and_then(|t| v.take("capture_time", convert::timestamp(t)));
        let privacy_notice_version = v
            .take(
                "privacy_notice_version",
                values::text(req.privacy_notice_version.trim(), MAX_NOTICE_VERSION),
            )
            .unwrap_or_default();
        let (Some(id), Some(channel), Some(purpose), Some(status)) = (id, channel, purpose, status)
        else {
            return Err(v);
        };
        v.check()?;
        Ok(Self {
            id,
            consent: service::SetConsent {
                channel,
                purpose,
                status,
                source,
                evidence,
                capture_time,
                privacy_notice_version,
            },
        })
    }
}

/// ChangeLifecycleStage: where to, and why.
#[derive(Debug)]
pub struct ChangeLifecycleStage {
    /// The customer moving.
    pub id: CustomerId,
    /// The new stage.
    pub stage: LifecycleStage,
    /// Why, trimmed.
    pub reason: String,
    /// The etag the client read, if it sent one.
    pub etag: Option<String>,
}

impl TryFrom<&pb::ChangeLifecycleStageRequest> for ChangeLifecycleStage {
    type Error = Violations;

    fn try_from(req: &pb::ChangeLifecycleStageRequest) -> Result<Self, Violations> {
        let mut v = Violations::default();
        let id = convert::customer_id(&req.name, "name", &mut v);
        let stage = v.required("stage", convert::stage_from_pb(req.stage));
        let reason = convert::required_text(&req.reason, MAX_REASON, "reason", &mut v);
        let (Some(id), Some(stage)) = (id, stage) else {
            return Err(v);
        };
        v.check()?;
        Ok(Self {
            id,
            stage,
            reason,
            etag: etag(&req.etag),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use prost_types::Timestamp;
    use rapport_proto::types::Channel as PbChannel;

    use super::*;

    const ID: &str = "customers/0192f1a0-0000-7000-8000-000000000001";

    /// The (field, description) pairs, in order.
    fn pairs(v: Violations) -> Vec<(String, String)> {
        v.0
    }

    fn pair(field: &str, description: &str) -> (String, String) {
        (field.to_owned(), description.to_owned())
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    fn bad_ts() -> Timestamp {
        Timestamp {
            seconds: 0,
            nanos: -1,
        }
    }

    #[test]
    fn order_by_grammar() {
        assert_eq!(
            order_from(""),
            Some(ListOrder {
                key: SortKey::CreateTime,
                descending: true
            })
        );
        assert_eq!(
            order_from("display_name"),
            Some(ListOrder {
                key: SortKey::DisplayName,
                descending: false
            })
        );
        assert_eq!(
            order_from("update_time desc"),
            Some(ListOrder {
                key: SortKey::UpdateTime,
                descending: true
            })
        );
        assert_eq!(order_from("email"), None);
        assert_eq!(order_from("create_time sideways"), None);
        assert_eq!(order_from("create_time desc extra"), None);
    }

    #[test]
    fn a_bare_customer_id_names_its_field() {
        assert_eq!(customer_id(ID, "name").unwrap().to_string(), &ID[10..]);
        assert_eq!(
            pairs(customer_id("customers/nope", "parent").unwrap_err()),
            vec![pair(
                "parent",
                "must be a customer resource name, `customers/{customer}`"
            )]
        );
    }

    #[test]
    fn set_consent_reports_every_bad_field_together() {
        let req = pb::SetConsentRequest {
            name: "people/1".into(),
            channel: PbChannel::Unspecified as i32,
            purpose: 99,
            status: pb::ConsentStatus::Unspecified as i32,
            source: "   ".into(),
            evidence: "a\u{7}b".into(),
            capture_time: Some(bad_ts()),
            request_id: String::new(),
            privacy_notice_version: "2026\u{0}".into(),
        };
        assert_eq!(
            pairs(SetConsent::try_from(&req).unwrap_err()),
            vec![
                pair(
                    "name",
                    "must be a customer resource name, `customers/{customer}`"
                ),
                pair("channel", "is required"),
                pair("purpose", "unknown consent purpose"),
                pair("status", "is required"),
                pair("source", "is required"),
                pair("evidence", "must not contain control characters"),
                pair("capture_time", "not a valid timestamp"),
                pair(
                    "privacy_notice_version",
                    "must not contain control characters"
                ),
            ]
        );
        // A source over the limit is reported after trimming.
        let long = pb::SetConsentRequest {
            name: ID.into(),
            channel: PbChannel::Sms as i32,
            purpose: pb::ConsentPurpose::Marketing as i32,
            status: pb::ConsentStatus::Granted as i32,
            source: format!(" {} ", "s".repeat(129)),
            ..Default::default()
        };
        assert_eq!(
            pairs(SetConsent::try_from(&long).unwrap_err()),
            vec![pair("source", "must be at most 128 characters")]
        );
    }

    #[test]
    fn set_consent_converts_a_good_request() {
        let capture = now();
        let req = pb::SetConsentRequest {
            name: ID.into(),
            channel: PbChannel::Email as i32,
            purpose: pb::ConsentPurpose::Marketing as i32,
            status: pb::ConsentStatus::Revoked as i32,
            source: "  web form ".into(),
            evidence: "checkbox".into(),
            capture_time: Some(convert::ts(capture)),
            request_id: "r1".into(),
            privacy_notice_version: String::new(),
        };
        let cmd = SetConsent::try_from(&req).unwrap();
        assert_eq!(cmd.id.to_string(), &ID[10..]);
        assert_eq!(cmd.consent.channel, Channel::Email);
        assert_eq!(cmd.consent.purpose, ConsentPurpose::Marketing);
        assert_eq!(cmd.consent.status, ConsentStatus::Revoked);
        assert_eq!(cmd.consent.source, "web form");
        assert_eq!(cmd.consent.evidence, "checkbox");
        assert_eq!(cmd.consent.capture_time, Some(capture));
        let no_time = pb::SetConsentRequest {
            capture_time: None,
            ..req
        };
        assert_eq!(
            SetConsent::try_from(&no_time).unwrap().consent.capture_time,
            None
        );
    }

    #[test]
    fn lookup_takes_exactly_one_valid_identity() {
        use pb::lookup_customer_request::Identity;
        let lookup = |identity| IdentityQuery::try_from(&pb::LookupCustomerRequest { identity });
        assert_eq!(
            pairs(lookup(None).unwrap_err()),
            vec![pair(
                "identity",
                "set exactly one of email, phone or channel_identity"
            )]
        );
        let email = pairs(lookup(Some(Identity::Email("not an email".into()))).unwrap_err());
        assert_eq!(email.len(), 1);
        assert_eq!(email[0].0, "email");
        let phone = pairs(lookup(Some(Identity::Phone("call me".into()))).unwrap_err());
        assert_eq!(phone.len(), 1);
        assert_eq!(phone[0].0, "phone");
        assert!(matches!(
            lookup(Some(Identity::Email("Ana@Example.com".into()))),
            Ok(IdentityQuery::Email(_))
        ));
    }

    #[test]
    fn lookup_checks_a_channel_identity_like_a_stored_one() {
        use pb::lookup_customer_request::Identity;
        let lookup = |c: pb::ChannelIdentity| {
            IdentityQuery::try_from(&pb::LookupCustomerRequest {
                identity: Some(Identity::ChannelIdentity(c)),
            })
        };
        let too_long = pb::ChannelIdentity {
            channel: PbChannel::Social as i32,
            provider: "instagram".into(),
            handle: "h".repeat(257),
        };
        assert_eq!(
            pairs(lookup(too_long).unwrap_err()),
            vec![pair(
                "channel_identity.handle",
                "must be 1 to 256 characters without control characters"
            )]
        );
        let everything_wrong = pb::ChannelIdentity {
            channel: PbChannel::Unspecified as i32,
            provider: "Not Valid!".into(),
            handle: " ".into(),
        };
        let fields: Vec<String> = pairs(lookup(everything_wrong).unwrap_err())
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            fields,
            [
                "channel_identity.channel",
                "channel_identity.provider",
                "channel_identity.handle"
            ]
        );
        let ok = lookup(pb::ChannelIdentity {
            channel: PbChannel::Social as i32,
            provider: " Instagram ".into(),
            handle: " @ana ".into(),
        })
        .unwrap();
        let IdentityQuery::Channel(c) = ok else {
            panic!("not a channel identity: {ok:?}")
        };
        assert_eq!(
            (c.channel, c.provider.as_str(), c.handle.as_str()),
            (Channel::Social, "instagram", "@ana")
        );
    }

    #[test]
    fn list_reports_every_bad_filter_and_binds_its_token_to_all() {
        let bad = pb::ListCustomersRequest {
            state: 99,
            lifecycle_stage: 99,
            tag: "Not A Tag!".into(),
            update_time_after: Some(bad_ts()),
            order_by: "email".into(),
            ..Default::default()
        };
        let fields: Vec<String> = pairs(ListCustomers::try_from(&bad).unwrap_err())
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            fields,
            [
                "state",
                "lifecycle_stage",
                "tag",
                "update_time_after",
                "order_by"
            ]
        );
        let defaults = ListCustomers::try_from(&pb::ListCustomersRequest::default()).unwrap();
        assert_eq!(defaults.filter.state, CustomerState::Active);
        assert_eq!(
            defaults.scope(),
            format!(
                "list;state={};stage=;tag=;after=0;order=CreateTime/true",
                CustomerState::Active.as_str()
            )
        );
        let filtered = ListCustomers::try_from(&pb::ListCustomersRequest {
            state: pb::CustomerState::Merged as i32,
            lifecycle_stage: pb::LifecycleStage::Retention as i32,
            tag: "vip".into(),
            update_time_after: Some(convert::ts(now())),
            order_by: "display_name".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            filtered.scope(),
            format!(
                "list;state={};stage={};tag=vip;after={};order=DisplayName/false",
                CustomerState::Merged.as_str(),
                LifecycleStage::Retention.as_str(),
                now().timestamp_micros()
            )
        );
    }

    #[test]
    fn search_query_is_trimmed_and_bounded() {
        let search = |q: &str| {
            SearchCustomers::try_from(&pb::SearchCustomersRequest {
                query: q.into(),
                ..Default::default()
            })
        };
        for bad in ["", "   ", &"q".repeat(201), "a\u{0}b"] {
            assert_eq!(
                pairs(search(bad).unwrap_err()),
                vec![pair("query", "must be 1 to 200 characters")],
                "{bad:?}"
            );
        }
        assert!(search(&format!(" {} ", "q".repeat(200))).is_ok());
        let s = search("  Ana Lima ").unwrap();
        assert_eq!(s.query, "Ana Lima");
        assert_eq!(s.scope(), "search;q=ana lima");
    }

    #[test]
    fn change_stage_requires_a_stage_and_a_reason() {
        let bad = pb::ChangeLifecycleStageRequest {
            name: ID.into(),
            stage: pb::LifecycleStage::Unspecified as i32,
            reason: "  ".into(),
            ..Default::default()
        };
        assert_eq!(
            pairs(ChangeLifecycleStage::try_from(&bad).unwrap_err()),
            vec![pair("stage", "is required"), pair("reason", "is required")]
        );
        let long = pb::ChangeLifecycleStageRequest {
            stage: 99,
            reason: "r".repeat(501),
            ..bad.clone()
        };
        assert_eq!(
            pairs(ChangeLifecycleStage::try_from(&long).unwrap_err()),
            vec![
                pair("stage", "unknown lifecycle stage"),
                pair("reason", "must be at most 500 characters")
            ]
        );
        let ok = ChangeLifecycleStage::try_from(&pb::ChangeLifecycleStageRequest {
            stage: pb::LifecycleStage::Advocacy as i32,
            reason: " referred a friend ".into(),
            ..bad
        })
        .unwrap();
        assert_eq!(ok.stage, LifecycleStage::Advocacy);
        assert_eq!(ok.reason, "referred a friend");
        assert_eq!(ok.etag, None, "an empty etag is not checked");
    }

    #[test]
    fn a_missing_customer_is_reported_alone() {
        let create = pb::CreateCustomerRequest::default();
        assert_eq!(
            pairs(new_profile(&create, now()).unwrap_err()),
            vec![pair("customer", "is required")]
        );
        let update = pb::UpdateCustomerRequest::default();
        assert_eq!(
            pairs(UpdateCustomer::from_pb(&update, now()).unwrap_err()),
            vec![pair("customer", "is required")]
        );
    }

    #[test]
    fn update_reports_the_name_and_the_mask_together() {
        let req = pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: "customer/1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let fields: Vec<String> = pairs(UpdateCustomer::from_pb(&req, now()).unwrap_err())
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, ["customer.name", "update_mask"]);
        let ok = UpdateCustomer::from_pb(
            &pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    name: ID.into(),
                    display_name: "Ana".into(),
                    etag: "W/1".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        assert_eq!(ok.updates.len(), 1);
        assert_eq!(ok.etag.as_deref(), Some("W/1"));
    }

    #[test]
    fn merge_reports_both_sides() {
        let req = pb::MergeCustomersRequest {
            survivor: "x".into(),
            merged: "y".into(),
            ..Default::default()
        };
        let fields: Vec<String> = pairs(MergeCustomers::try_from(&req).unwrap_err())
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, ["survivor", "merged"]);
    }
}
