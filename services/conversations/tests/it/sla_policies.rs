//! SLA policies through real gRPC: create, get, list and update as
//! revisions, with etags and request ids; every bad field reported; targets
//! in business time must name a calendar of the tenant.
use tonic::Code;

use crate::harness::*;

async fn calendar(h: &Harness) -> String {
    h.client()
        .create_business_calendar(tenant_request(
            TENANT,
            pb::CreateBusinessCalendarRequest {
                business_calendar: Some(pb::BusinessCalendar {
                    display_name: "Always".into(),
                    time_zone: "UTC".into(),
                    always_open: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .business_calendar
        .unwrap()
        .name
}

fn vip_policy(calendar: &str) -> pb::SlaPolicy {
    pb::SlaPolicy {
        display_name: "VIP email".into(),
        position: 10,
        condition: Some(pb::SlaCondition {
            channels: vec![Channel::Email as i32],
            customer_tags: vec!["VIP".into()],
            ..Default::default()
        }),
        targets: vec![pb::SlaPriorityTargets {
            priority: pb::Priority::Urgent as i32,
            first_response: sla_target(900, calendar),
            resolution: sla_target(400 * 3600, ""),
            ..Default::default()
        }],
        pause_when_pending: true,
        warn_at_percent: 80,
        ..Default::default()
    }
}

#[tokio::test]
async fn sla_policies_are_created_once_read_and_updated_as_new_revisions() {
    let h = start().await;
    let cal = calendar(&h).await;
    let created = try_create_policy(&h, vip_policy(&cal), "p-1")
        .await
        .unwrap_or_else(|s| panic!("CreateSlaPolicy: {}", describe(&s)));
    assert!(created.name.starts_with("slaPolicies/"));
    assert_eq!((created.revision, created.etag.as_str()), (1, "\"1\""));
    assert_eq!(created.condition.as_ref().unwrap().customer_tags, ["vip"]);
    assert_eq!(created.targets[0].first_response, sla_target(900, &cal));
    assert_eq!(
        try_create_policy(&h, vip_policy(&cal), "p-1")
            .await
            .unwrap(),
        created
    );
    let taken = expect_err(try_create_policy(&h, vip_policy(&cal), "p-2").await);
    assert_error(&taken, Code::AlreadyExists, "SLA_POLICY_ALREADY_EXISTS");

    let got = h
        .client()
        .get_sla_policy(tenant_request(
            TENANT,
            pb::GetSlaPolicyRequest {
                name: created.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .sla_policy
        .unwrap();
    assert_eq!(got, created);
    let listed = h
        .client()
        .list_sla_policies(tenant_request(
            TENANT,
            pb::ListSlaPoliciesRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sla_policies, vec![created.clone()]);
    let hidden = expect_err(
        h.client()
            .get_sla_policy(tenant_request(
                OTHER_TENANT,
                pb::GetSlaPolicyRequest {
                    name: created.name.clone(),
                },
            ))
            .await,
    );
    assert_error(&hidden, Code::NotFound, "SLA_POLICY_NOT_FOUND");

    let mut change = created.clone();
    change.position = 1;
    change.warn_at_percent = 75;
    let request = |p: pb::SlaPolicy, request_id: &str| pb::UpdateSlaPolicyRequest {
        sla_policy: Some(p),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["position".into(), "warn_at_percent".into()],
        }),
        request_id: request_id.into(),
    };
    let updated = h
        .client()
        .update_sla_policy(tenant_request(TENANT, request(change.clone(), "u-1")))
        .await
        .unwrap()
        .into_inner()
        .sla_policy
        .unwrap();
    assert_eq!(
        (updated.revision, updated.position, updated.warn_at_percent),
        (2, 1, 75)
    );
    let stale = expect_err(
        h.client()
            .update_sla_policy(tenant_request(TENANT, request(change, "u-2")))
            .await,
    );
    assert_error(&stale, Code::Aborted, "ETAG_MISMATCH");
}

#[tokio::test]
async fn bad_policies_report_every_bad_field() {
    let h = start().await;
    let mut p = vip_policy("businessCalendars/0190a0a0-0000-7000-8000-000000000000");
    p.display_name = String::new();
    p.warn_at_percent = 150;
    p.condition.as_mut().unwrap().inboxes = vec!["teams/x".into()];
    p.condition.as_mut().unwrap().priorities = vec![0];
    p.targets.push(pb::SlaPriorityTargets {
        priority: pb::Priority::Urgent as i32,
        next_response: sla_target(-5, "calendars/x"),
        ..Default::default()
    });
    p.targets.push(pb::SlaPriorityTargets {
        priority: pb::Priority::Low as i32,
        ..Default::default()
    });
    let status = expect_err(try_create_policy(&h, p, "").await);
    for field in [
        "sla_policy.display_name",
        "sla_policy.warn_at_percent",
        "sla_policy.condition.inboxes[0]",
        "sla_policy.condition.priorities[0]",
        "sla_policy.targets[1].priority",
        "sla_policy.targets[1].next_response.duration",
        "sla_policy.targets[1].next_response.business_calendar",
        "sla_policy.targets[2]",
    ] {
        assert_violation(&status, field);
    }
    // A well-formed policy naming a calendar that does not exist.
    let missing = expect_err(
        try_create_policy(
            &h,
            vip_policy("businessCalendars/0190a0a0-0000-7000-8000-000000000000"),
            "",
        )
        .await,
    );
    assert_violation(
        &missing,
        "sla_policy.targets[0].first_response.business_calendar",
    );
}

#[tokio::test]
async fn reordering_sets_every_position_at_once_and_once_per_request_id() {
    let h = start().await;
    let mut names = Vec::new();
    for (n, label) in ["a", "b", "c"].into_iter().enumerate() {
        let mut p = vip_policy("");
        p.display_name = label.into();
        p.position = n as i64;
        names.push(try_create_policy(&h, p, "").await.unwrap().name);
    }
    let reorder = |names: Vec<String>, request_id: &str| {
        let mut client = h.client();
        let request = pb::ReorderSlaPoliciesRequest {
            names,
            request_id: request_id.into(),
        };
        async move {
            client
                .reorder_sla_policies(tenant_request(TENANT, request))
                .await
                .map(|r| r.into_inner().sla_policies)
        }
    };
    let new_order = vec![names[2].clone(), names[0].clone(), names[1].clone()];
    let reordered = reorder(new_order.clone(), "r-1").await.unwrap();
    let summary: Vec<(String, i64, i64)> = reordered
        .iter()
        .map(|p| (p.display_name.clone(), p.position, p.revision))
        .collect();
    assert_eq!(
        summary,
        [("c".into(), 0, 2), ("a".into(), 1, 2), ("b".into(), 2, 2)]
    );
    // The retry answers the first result and bumps nothing.
    assert_eq!(reorder(new_order.clone(), "r-1").await.unwrap(), reordered);
    // The same order again changes no revision.
    let same = reorder(new_order, "r-2").await.unwrap();
    assert!(same.iter().all(|p| p.revision == 2), "{same:?}");

    let partial = expect_err(reorder(vec![names[0].clone(), names[0].clone()], "").await);
    assert_violation(&partial, "names[1]");
    assert_violation(&partial, "names");
    let unknown = expect_err(
        reorder(
            vec![
                names[0].clone(),
                names[1].clone(),
                names[2].clone(),
                "slaPolicies/0190a0a0-0000-7000-8000-000000000000".into(),
            ],
            "",
        )
        .await,
    );
    assert_violation(&unknown, "names[3]");
    let malformed = expect_err(reorder(vec!["teams/x".into()], "").await);
    assert_violation(&malformed, "names[0]");
}

#[tokio::test]
async fn a_calendar_in_use_is_kept_and_deletes_happen_once() {
    let h = start().await;
    let cal = calendar(&h).await;
    let policy = try_create_policy(&h, vip_policy(&cal), "").await.unwrap();
    let delete_calendar = |etag: &str, request_id: &str| {
        let mut client = h.client();
        let request = pb::DeleteBusinessCalendarRequest {
            name: cal.clone(),
            etag: etag.into(),
            request_id: request_id.into(),
        };
        async move {
            client
                .delete_business_calendar(tenant_request(TENANT, request))
                .await
        }
    };
    let in_use = expect_err(delete_calendar("", "d-1").await);
    assert_error(&in_use, Code::FailedPrecondition, "RESOURCE_IN_USE");

    let delete_policy = |etag: &str, request_id: &str| {
        let mut client = h.client();
        let request = pb::DeleteSlaPolicyRequest {
            name: policy.name.clone(),
            etag: etag.into(),
            request_id: request_id.into(),
        };
        async move {
            client
                .delete_sla_policy(tenant_request(TENANT, request))
                .await
        }
    };
    let stale = expect_err(delete_policy("\"7\"", "").await);
    assert_error(&stale, Code::Aborted, "ETAG_MISMATCH");
    delete_policy(&policy.etag, "d-2").await.unwrap();
    // The retry answers the first result; a new request finds nothing.
    delete_policy(&policy.etag, "d-2").await.unwrap();
    let gone = expect_err(delete_policy("", "").await);
    assert_error(&gone, Code::NotFound, "SLA_POLICY_NOT_FOUND");

    delete_calendar("\"1\"", "d-3").await.unwrap();
    let gone = expect_err(delete_calendar("", "").await);
    assert_error(&gone, Code::NotFound, "BUSINESS_CALENDAR_NOT_FOUND");
    let listed = h
        .client()
        .list_business_calendars(tenant_request(
            TENANT,
            pb::ListBusinessCalendarsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.business_calendars.is_empty());
}
