//! Outbound calls to the profiles service, one function per call (here:
//! `ResolveCustomer`, `GetCustomer`, `CheckContactPolicy`), over the shared service-to-service client
//! (`rapport_kit::peer`): each call carries an assertion this service signs
//! with its own key for that one method, and the current trace.
use rapport_kit::Peer;
use rapport_proto::profiles::{
    self as pb, profiles_service_client::ProfilesServiceClient,
    resolve_customer_request::Identity as PbIdentity,
};
use tonic::Code;

use crate::{
    api::convert::{channel_to_pb, customer_name},
    domain::{
        Channel, CustomerId, Error, Purpose, Tenant,
        ports::{Contact, CustomerFacts, Customers, Identity},
    },
};

const RESOLVE_CUSTOMER: &str = "/rapport.profiles.v1.ProfilesService/ResolveCustomer";
const GET_CUSTOMER: &str = "/rapport.profiles.v1.ProfilesService/GetCustomer";
const CHECK_CONTACT_POLICY: &str = "/rapport.profiles.v1.ProfilesService/CheckContactPolicy";

/// A failed call as the domain's error: the caller's input when profiles
/// refused it as invalid, else a passing failure.
fn failure(status: tonic::Status) -> Error {
    match status.code() {
        Code::InvalidArgument => Error::SenderRefused(status.message().to_owned()),
        _ => Error::ProfilesUnavailable(format!("{:?}: {}", status.code(), status.message())),
    }
}

/// The profiles service, as the conversations domain's customer directory.
#[derive(Debug, Clone)]
pub struct Profiles {
    peer: Peer,
}

impl Profiles {
    /// Profiles reached through `peer`.
    pub fn new(peer: Peer) -> Self {
        Self { peer }
    }
}

impl Customers for Profiles {
    async fn resolve(
        &self,
        tenant: &Tenant,
        identity: &Identity,
        display_name: &str,
    ) -> Result<CustomerId, Error> {
        let identity = match identity {
            Identity::Email(e) => PbIdentity::Email(e.clone()),
            Identity::Phone(p) => PbIdentity::Phone(p.clone()),
            Identity::Handle {
                channel,
                provider,
                handle,
            } => PbIdentity::ChannelIdentity(pb::ChannelIdentity {
                channel: channel_to_pb(*channel),
                provider: provider.clone(),
                handle: handle.clone(),
            }),
        };
        let request = self.peer.request(
            tenant,
            RESOLVE_CUSTOMER,
            pb::ResolveCustomerRequest {
                identity: Some(identity),
                display_name: display_name.to_owned(),
                ..Default::default()
            },
        );
        let answer = ProfilesServiceClient::new(self.peer.channel())
            .resolve_customer(request)
            .await
            .map_err(|status| match status.code() {
                // The identity itself is bad (an address profiles will not
                // take): the caller's input, not a passing failure.
                Code::InvalidArgument => Error::SenderRefused(status.message().to_owned()),
                _ => {
                    Error::ProfilesUnavailable(format!("{:?}: {}", status.code(), status.message()))
                }
            })?
            .into_inner();
        let name = answer.customer.map(|c| c.name).unwrap_or_default();
        name.strip_prefix("customers/")
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .map(CustomerId)
            .ok_or_else(|| Error::Internal(format!("profiles answered the customer {name:?}")))
    }

    async fn contact(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        channel: Channel,
        purpose: Purpose,
    ) -> Result<Contact, Error> {
        Ok(self.check(tenant, customer, channel, purpose).await?.0)
    }

    async fn facts(&self, tenant: &Tenant, customer: CustomerId) -> Result<CustomerFacts, Error> {
        let request = self.peer.request(
            tenant,
            GET_CUSTOMER,
            pb::GetCustomerRequest {
                name: customer_name(customer),
            },
        );
        let c = ProfilesServiceClient::new(self.peer.channel())
            .get_customer(request)
            .await
            .map_err(failure)?
            .into_inner()
            .customer
            .unwrap_or_default();
        Ok(CustomerFacts {
            given_name: c.given_name,
            family_name: c.family_name,
            display_name: c.display_name,
            locale: c.locale,
            tags: c.tags,
        })
    }
}

impl Profiles {
    /// The customer's contact policy for `purpose` on `channel`, and their
    /// address there (their primary one), if they have one.
    pub async fn check(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        channel: Channel,
        purpose: Purpose,
    ) -> Result<(Contact, Option<String>), Error> {
        let purpose = match purpose {
            Purpose::Service | Purpose::Acknowledgement => pb::ConsentPurpose::Service,
            Purpose::Marketing => pb::ConsentPurpose::Marketing,
            Purpose::Surveys => pb::ConsentPurpose::Surveys,
            Purpose::Loyalty => pb::ConsentPurpose::Loyalty,
        };
        let request = self.peer.request(
            tenant,
            CHECK_CONTACT_POLICY,
            pb::CheckContactPolicyRequest {
                name: customer_name(customer),
                channel: channel_to_pb(channel),
                purpose: purpose as i32,
            },
        );
        let answer = ProfilesServiceClient::new(self.peer.channel())
            .check_contact_policy(request)
            .await
            .map_err(failure)?
            .into_inner();
        let reason =
            pb::ContactRefusal::try_from(answer.reason).unwrap_or(pb::ContactRefusal::Unspecified);
        let contact = match (answer.allowed, reason, answer.next_allowed_time) {
            (true, _, _) => Contact::Allowed,
            (false, pb::ContactRefusal::QuietHours, Some(t)) => {
                Contact::Deferred(rapport_kit::convert::from_ts(&t).ok_or_else(|| {
                    Error::Internal("profiles answered a bad next_allowed_time".into())
                })?)
            }
            (false, reason, _) => Contact::Refused(
                reason
                    .as_str_name()
                    .trim_start_matches("CONTACT_REFUSAL_")
                    .to_owned(),
            ),
        };
        Ok((contact, Some(answer.address).filter(|a| !a.is_empty())))
    }
}
