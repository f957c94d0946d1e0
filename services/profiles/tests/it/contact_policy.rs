//! CheckContactPolicy through the API: the answer a sender acts on. The
//! rules' cases (zones, midnight, daylight saving) are unit-tested in
//! domain::contact; these check the wiring, the reasons and the errors.
use chrono::{Timelike as _, Utc};
use pb::{CheckContactPolicyRequest, ConsentPurpose, ContactRefusal};
use rapport_proto::types::Channel;
use tonic::Code;

use crate::harness::*;

async fn check_in(
    h: &Harness,
    tenant: &str,
    name: &str,
    channel: Channel,
    purpose: ConsentPurpose,
) -> Result<pb::CheckContactPolicyResponse, tonic::Status> {
    let request = CheckContactPolicyRequest {
        name: name.into(),
        channel: channel as i32,
        purpose: purpose as i32,
    };
    h.client()
        .check_contact_policy(tenant_request(tenant, request))
        .await
        .map(tonic::Response::into_inner)
}

async fn grant(h: &Harness, name: &str, channel: Channel, purpose: ConsentPurpose) {
    h.set_consent(pb::SetConsentRequest {
        name: name.into(),
        channel: channel as i32,
        purpose: purpose as i32,
        status: pb::ConsentStatus::Granted as i32,
        source: "test".into(),
        ..Default::default()
    })
    .await
    .unwrap();
}

fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", (minutes / 60) % 24, minutes % 60)
}

#[tokio::test]
async fn consent_do_not_contact_and_quiet_hours_decide_and_service_replies_pass() {
    let h = start().await;
    let mut c = customer("Ada", "ada@example.com");
    c.locale = "en-GB".into();
    let ada = h.create(c).await;

    // No consent record: surveys refused; a service reply allowed, with the
    // address and language to use.
    let d = check_in(
        &h,
        TENANT,
        &ada.name,
        Channel::Email,
        ConsentPurpose::Surveys,
    )
    .await
    .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.reason, ContactRefusal::NoConsent as i32);
    let d = check_in(
        &h,
        TENANT,
        &ada.name,
        Channel::Unspecified,
        ConsentPurpose::Service,
    )
    .await
    .unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(
        d.channel,
        Channel::Email as i32,
        "the one it has an address on"
    );
    assert_eq!(d.address, "ada@example.com");
    assert_eq!(d.language, "en-GB");

    grant(&h, &ada.name, Channel::Email, ConsentPurpose::Surveys).await;
    let d = check_in(
        &h,
        TENANT,
        &ada.name,
        Channel::Email,
        ConsentPurpose::Surveys,
    )
    .await
    .unwrap();
    assert!(d.allowed, "{d:?}");
    let d = check_in(&h, TENANT, &ada.name, Channel::Sms, ConsentPurpose::Service)
        .await
        .unwrap();
    assert_eq!(d.reason, ContactRefusal::NoAddressOnChannel as i32);

    // Quiet hours around now (UTC, the default zone): refused until they end.
    let now = Utc::now();
    let minute = now.hour() * 60 + now.minute();
    let (start_at, end_at) = (minute + 24 * 60 - 60, minute + 120);
    let mut quiet = h.get(&ada.name).await;
    quiet.contact_preferences = Some(pb::ContactPreferences {
        quiet_hours: Some(pb::QuietHours {
            start: hhmm(start_at),
            end: hhmm(end_at),
        }),
        ..Default::default()
    });
    let quiet = h.update(quiet, &["contact_preferences"]).await.unwrap();
    let d = check_in(
        &h,
        TENANT,
        &quiet.name,
        Channel::Email,
        ConsentPurpose::Surveys,
    )
    .await
    .unwrap();
    assert_eq!(d.reason, ContactRefusal::QuietHours as i32, "{d:?}");
    let next = d.next_allowed_time.expect("when the quiet hours end");
    let wait = next.seconds - now.timestamp();
    assert!(
        (3_540..=7_260).contains(&wait),
        "about two hours from now: {wait} s"
    );

    let mut dnc = h.get(&ada.name).await;
    dnc.contact_preferences = Some(pb::ContactPreferences {
        do_not_contact: true,
        ..Default::default()
    });
    h.update(dnc, &["contact_preferences"]).await.unwrap();
    let d = check_in(
        &h,
        TENANT,
        &ada.name,
        Channel::Email,
        ConsentPurpose::Surveys,
    )
    .await
    .unwrap();
    assert_eq!(d.reason, ContactRefusal::DoNotContact as i32);
    let d = check_in(
        &h,
        TENANT,
        &ada.name,
        Channel::Email,
        ConsentPurpose::Service,
    )
    .await
    .unwrap();
    assert!(d.allowed, "a reply to their own case still goes");
}

#[tokio::test]
async fn erased_and_merged_customers_are_answered_with_their_reason() {
    let h = start().await;
    let survivor = h.create(customer("Keep", "keep@example.com")).await;
    let merged = h.create(customer("Go", "go@example.com")).await;
    h.merge(&survivor.name, &merged.name, "").await.unwrap();
    let d = check_in(
        &h,
        TENANT,
        &merged.name,
        Channel::Email,
        ConsentPurpose::Service,
    )
    .await
    .unwrap();
    assert_eq!(d.reason, ContactRefusal::Merged as i32);
    assert_eq!(d.survivor, survivor.name);
    h.erase(&survivor.name, "").await.unwrap();
    let d = check_in(
        &h,
        TENANT,
        &survivor.name,
        Channel::Email,
        ConsentPurpose::Service,
    )
    .await
    .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.reason, ContactRefusal::Erased as i32);
}

#[tokio::test]
async fn unknown_customers_and_bad_requests_are_refused() {
    let h = start().await;
    let ada = h.create(customer("Ada", "ada@example.com")).await;
    let status = check_in(
        &h,
        OTHER_TENANT,
        &ada.name,
        Channel::Email,
        ConsentPurpose::Service,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "another tenant's customer");
    let status = check_in(
        &h,
        TENANT,
        &ada.name,
        Channel::Email,
        ConsentPurpose::Unspecified,
    )
    .await
    .unwrap_err();
    assert_violation(&status, "purpose");
    let status = check_in(
        &h,
        TENANT,
        "customers/nope",
        Channel::Email,
        ConsentPurpose::Service,
    )
    .await
    .unwrap_err();
    assert_violation(&status, "name");
}
