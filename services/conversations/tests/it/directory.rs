//! Teams, agents and canned responses (the same four RPCs each),
//! assignment and auto-assignment, rendering canned responses.
use tonic::Code;

use crate::harness::*;

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

async fn team(h: &Harness, name: &str, auto_assign: bool) -> pb::Team {
    h.client()
        .create_team(tenant_request(
            TENANT,
            pb::CreateTeamRequest {
                team: Some(pb::Team {
                    display_name: name.into(),
                    auto_assign,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("CreateTeam: {}", describe(&s)))
        .into_inner()
        .team
        .unwrap()
}

async fn try_agent(h: &Harness, agent: pb::Agent) -> Result<pb::Agent, tonic::Status> {
    h.client()
        .create_agent(tenant_request(
            TENANT,
            pb::CreateAgentRequest {
                agent: Some(agent),
                request_id: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner().agent.unwrap())
}

fn human(name: &str, principal: &str, teams: &[&pb::Team]) -> pb::Agent {
    pb::Agent {
        display_name: name.into(),
        kind: pb::AgentKind::Human as i32,
        principal: principal.into(),
        teams: teams.iter().map(|t| t.name.clone()).collect(),
        availability: pb::AgentAvailability::Available as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn agents_and_teams_are_created_unique_checked_listed_and_updated() {
    let h = start().await;
    let support = team(&h, "Support", false).await;
    let grace = try_agent(&h, human("Grace", "apiKeys/k1", &[&support]))
        .await
        .unwrap();
    assert_eq!(grace.teams, vec![support.name.clone()]);
    let taken = expect_err(try_agent(&h, human("Other", "apiKeys/k1", &[])).await);
    assert_error(&taken, Code::AlreadyExists, "AGENT_ALREADY_EXISTS");
    let bad = expect_err(
        try_agent(
            &h,
            pb::Agent {
                kind: 0,
                teams: vec!["teams/00000000-0000-0000-0000-000000000000".into()],
                ..human("", "", &[])
            },
        )
        .await,
    );
    for field in ["agent.kind", "agent.display_name", "agent.principal"] {
        assert_violation(&bad, field);
    }
    let ghost_team = expect_err(
        try_agent(
            &h,
            pb::Agent {
                teams: vec!["teams/00000000-0000-0000-0000-000000000000".into()],
                ..human("G", "jwt:g", &[])
            },
        )
        .await,
    );
    assert_violation(&ghost_team, "agent.teams[0]");
    let dup_team = expect_err(
        h.client()
            .create_team(tenant_request(
                TENANT,
                pb::CreateTeamRequest {
                    team: Some(pb::Team {
                        display_name: "support".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await,
    );
    assert_error(&dup_team, Code::AlreadyExists, "TEAM_ALREADY_EXISTS");

    let busy = h
        .client()
        .update_agent(tenant_request(
            TENANT,
            pb::UpdateAgentRequest {
                agent: Some(pb::Agent {
                    availability: pb::AgentAvailability::Busy as i32,
                    ..grace.clone()
                }),
                update_mask: mask(&["availability"]),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .agent
        .unwrap();
    assert_eq!(busy.availability, pb::AgentAvailability::Busy as i32);
    assert_eq!(busy.etag, "\"2\"");
    let stale = expect_err(
        h.client()
            .update_agent(tenant_request(
                TENANT,
                pb::UpdateAgentRequest {
                    agent: Some(grace.clone()),
                    update_mask: mask(&["capacity"]),
                    request_id: String::new(),
                },
            ))
            .await,
    );
    assert_error(&stale, Code::Aborted, "ETAG_MISMATCH");
    let listed = h
        .client()
        .list_agents(tenant_request(TENANT, pb::ListAgentsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .agents;
    assert_eq!(listed, vec![busy]);
    let other = expect_err(
        h.client()
            .get_agent(tenant_request(
                OTHER_TENANT,
                pb::GetAgentRequest { name: grace.name },
            ))
            .await,
    );
    assert_error(&other, Code::NotFound, "AGENT_NOT_FOUND");
}

#[tokio::test]
async fn assignment_emits_its_event_and_auto_assignment_picks_an_available_agent_with_room() {
    let h = start().await;
    let billing = team(&h, "Billing", true).await;
    let busy = try_agent(
        &h,
        pb::Agent {
            availability: pb::AgentAvailability::Busy as i32,
            ..human("Busy", "jwt:busy", &[&billing])
        },
    )
    .await
    .unwrap();
    let ada = try_agent(&h, human("Ada", "jwt:ada", &[&billing]))
        .await
        .unwrap();
    let inbox = h.create_inbox(email_inbox("billing@acme.example", 0)).await;
    let c = h
        .receive(
            &inbox.name,
            "customer@example.com",
            email("invoice?", "<1@x>"),
        )
        .await
        .conversation
        .unwrap();
    let assigned = h
        .client()
        .assign_conversation(tenant_request(
            TENANT,
            pb::AssignConversationRequest {
                name: c.name.clone(),
                team: billing.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(assigned.team, billing.name);
    assert_eq!(assigned.assignee, ada.name, "the busy agent is skipped");
    assert_ne!(assigned.assignee, busy.name);
    let events = outbox_events(&h.db, TENANT, &c.name).await;
    let event: pb::ConversationAssigned = payload(events.last().unwrap());
    assert_eq!(
        (event.assignee.as_str(), event.auto),
        (ada.name.as_str(), true)
    );

    // Unassigning is an assignment to nobody.
    let cleared = h
        .client()
        .assign_conversation(tenant_request(
            TENANT,
            pb::AssignConversationRequest {
                name: c.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!((cleared.assignee.as_str(), cleared.team.as_str()), ("", ""));
    let unknown = expect_err(
        h.client()
            .assign_conversation(tenant_request(
                TENANT,
                pb::AssignConversationRequest {
                    name: c.name,
                    assignee: "agents/00000000-0000-0000-0000-000000000000".into(),
                    ..Default::default()
                },
            ))
            .await,
    );
    assert_violation(&unknown, "assignee");
}

#[tokio::test]
async fn canned_responses_render_with_the_conversation_the_agent_and_the_best_variant() {
    let h = start().await;
    let bad = expect_err(
        h.client()
            .create_canned_response(tenant_request(
                TENANT,
                pb::CreateCannedResponseRequest {
                    canned_response: Some(pb::CannedResponse {
                        shortcode: "Late Order".into(),
                        body: "Hi {{customer.first_name}}".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await,
    );
    assert_violation(&bad, "canned_response.shortcode");
    assert_violation(&bad, "canned_response.body");

    let canned = h
        .client()
        .create_canned_response(tenant_request(
            TENANT,
            pb::CreateCannedResponseRequest {
                canned_response: Some(pb::CannedResponse {
                    shortcode: "late-order".into(),
                    title: "Late order".into(),
                    body: "Hi {{customer.given_name|there}}, case {{case_number}} is with {{agent.display_name}}.".into(),
                    variants: vec![pb::CannedResponseVariant {
                        locale: "fr".into(),
                        channel: 0,
                        body: "Bonjour {{customer.display_name}}, dossier {{case_number}}.".into(),
                    }],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .canned_response
        .unwrap();
    let grace = try_agent(&h, human("Grace", "jwt:grace", &[]))
        .await
        .unwrap();
    let inbox = h.create_inbox(email_inbox("support@acme.example", 0)).await;
    let c = h
        .receive(&inbox.name, "ada@example.com", email("late", "<1@x>"))
        .await
        .conversation
        .unwrap();
    let render = |locale: &str| pb::RenderCannedResponseRequest {
        name: canned.name.clone(),
        conversation: c.name.clone(),
        agent: grace.name.clone(),
        locale: locale.into(),
        ..Default::default()
    };
    let english = h
        .client()
        .render_canned_response(tenant_request(TENANT, render("en-GB")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        english.text,
        format!("Hi there, case {} is with Grace.", c.case_number)
    );
    assert_eq!(english.locale, "");
    assert_eq!(english.missing_variables, ["customer.given_name"]);
    let french = h
        .client()
        .render_canned_response(tenant_request(TENANT, render("fr-FR")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        french.text,
        format!("Bonjour Ada, dossier {}.", c.case_number)
    );
    assert_eq!(french.locale, "fr");
}
