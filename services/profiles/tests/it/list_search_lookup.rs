//! ListCustomers (filters, ordering, page sizes, page tokens, pagination under
//! concurrent inserts), SearchCustomers and LookupCustomer.

use std::collections::{BTreeSet, HashMap};

use crate::harness::*;
use pb::{CustomerState, LifecycleStage, ListCustomersRequest, SearchCustomersRequest};
use tonic::Code;

fn names(customers: &[pb::Customer]) -> Vec<String> {
    customers.iter().map(|c| c.name.clone()).collect()
}

async fn search(
    h: &Harness,
    request: SearchCustomersRequest,
) -> Result<pb::SearchCustomersResponse, tonic::Status> {
    h.client()
        .search_customers(tenant_request(TENANT, request))
        .await
        .map(tonic::Response::into_inner)
}

async fn search_all(h: &Harness, query: &str) -> Vec<pb::Customer> {
    let mut request = SearchCustomersRequest {
        query: query.to_owned(),
        ..Default::default()
    };
    let mut all = Vec::new();
    for _ in 0..1_000 {
        let page = search(h, request.clone())
            .await
            .unwrap_or_else(|s| panic!("search {query:?}: {}", describe(&s)));
        all.extend(page.customers);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
    panic!("search never returned a last page");
}

#[tokio::test]
async fn list_excludes_merged_and_erased_by_default() {
    let h = start().await;
    let survivor = h.create(customer("Survivor", "s@example.com")).await;
    let merged = h.create(customer("Merged", "m@example.com")).await;
    let erased = h.create(customer("Erased", "e@example.com")).await;
    h.merge(&survivor.name, &merged.name, "").await.unwrap();
    h.erase(&erased.name, "").await.unwrap();

    assert_eq!(h.active_names_in(TENANT).await, vec![survivor.name.clone()]);
    let active = h
        .list_all_in(
            TENANT,
            ListCustomersRequest {
                state: CustomerState::Active as i32,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(names(&active), vec![survivor.name.clone()]);
    let tombstones = h
        .list_all_in(
            TENANT,
            ListCustomersRequest {
                state: CustomerState::Merged as i32,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(names(&tombstones), vec![merged.name.clone()]);
    assert_eq!(tombstones[0].merged_into, survivor.name);
    let erased_list = h
        .list_all_in(
            TENANT,
            ListCustomersRequest {
                state: CustomerState::Erased as i32,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(names(&erased_list), vec![erased.name.clone()]);
}

#[tokio::test]
async fn list_filters_by_stage_tag_and_update_time() {
    let h = start().await;
    let a = h
        .create(pb::Customer {
            tags: vec!["vip".into()],
            ..customer("A", "a@example.com")
        })
        .await;
    let b = h
        .create(pb::Customer {
            tags: vec!["vip".into(), "beta".into()],
            ..customer("B", "b@example.com")
        })
        .await;
    let c = h.create(customer("C", "c@example.com")).await;
    h.change_stage(stage_change(
        &b.name,
        LifecycleStage::Consideration,
        "demo booked",
    ))
    .await
    .unwrap();

    let vip = h
        .list_all_in(
            TENANT,
            ListCustomersRequest {
                tag: "vip".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        names(&vip).into_iter().collect::<BTreeSet<_>>(),
        [a.name.clone(), b.name.clone()].into()
    );
    let beta = h
        .list_all_in(
            TENANT,
            ListCustomersRequest {
                tag: "beta".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(names(&beta), vec![b.name.clone()]);

    let considering = h
        .list_all_in(
            TENANT,
            ListCustomersRequest {
                lifecycle_stage: LifecycleStage::Consideration as i32,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(names(&considering), vec![b.name.clone()]);
    let aware = h
        .list_all_in(
            TENANT,
            ListCustomersRequest {
                lifecycle_stage: LifecycleStage::Awareness as i32,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        names(&aware).into_iter().collect::<BTreeSet<_>>(),
        [a.name.clone(), c.name.clone()].into()
    );
    let combined = h
        .list_all_in(
            TENANT,
            ListCustomersRequest {
                tag: "vip".into(),
                lifecycle_stage: LifecycleStage::Awareness as i32,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(names(&combined), vec![a.name.clone()]);

    // Touch C after everything else: it alone changed after B's last change.
    let b_now = h.get(&b.name).await;
    let c_updated = h
        .update(
            pb::Customer {
                name: c.name.clone(),
                display_name: "C2".into(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await
        .unwrap();
    assert!(
        to_chrono(c_updated.update_time.as_ref().unwrap())
            > to_chrono(b_now.update_time.as_ref().unwrap())
    );
    let recent = h
        .list_all_in(
            TENANT,
            ListCustomersRequest {
                update_time_after: b_now.update_time,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(names(&recent), vec![c.name.clone()]);
    let unknown_tag = h
        .list_all_in(
            TENANT,
            ListCustomersRequest {
                tag: "nobody".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(unknown_tag.is_empty());
}

#[tokio::test]
async fn list_orders_as_asked() {
    let h = start().await;
    let carol = h.create(customer("Carol", "carol@example.com")).await;
    let alice = h.create(customer("Alice", "alice@example.com")).await;
    let bob = h.create(customer("Bob", "bob@example.com")).await;
    // Carol changes last.
    h.update(
        pb::Customer {
            name: carol.name.clone(),
            tags: vec!["touched".into()],
            ..Default::default()
        },
        &["tags"],
    )
    .await
    .unwrap();

    let order = |order_by: &str| ListCustomersRequest {
        order_by: order_by.to_owned(),
        ..Default::default()
    };
    let by_creation = vec![carol.name.clone(), alice.name.clone(), bob.name.clone()];
    let mut by_creation_desc = by_creation.clone();
    by_creation_desc.reverse();
    let by_update = vec![alice.name.clone(), bob.name.clone(), carol.name.clone()];
    let mut by_update_desc = by_update.clone();
    by_update_desc.reverse();
    let by_name = vec![alice.name.clone(), bob.name.clone(), carol.name.clone()];
    let mut by_name_desc = by_name.clone();
    by_name_desc.reverse();

    for (order_by, expected) in [
        ("", &by_creation_desc),
        ("create_time desc", &by_creation_desc),
        ("create_time", &by_creation),
        ("update_time", &by_update),
        ("update_time desc", &by_update_desc),
        ("display_name", &by_name),
        ("display_name desc", &by_name_desc),
    ] {
        let listed = h.list_all_in(TENANT, order(order_by)).await;
        assert_eq!(&names(&listed), expected, "order_by {order_by:?}");
        // The same order, one customer per page.
        let paged = h
            .list_all_in(
                TENANT,
                ListCustomersRequest {
                    page_size: 1,
                    ..order(order_by)
                },
            )
            .await;
        assert_eq!(
            &names(&paged),
            expected,
            "order_by {order_by:?}, page_size 1"
        );
    }

    for bad in [
        "name",
        "create_time sideways",
        "display_name asc desc",
        "DROP TABLE",
    ] {
        let err = expect_err(h.list_in(TENANT, order(bad)).await);
        assert_violation(&err, "order_by");
    }
}

#[tokio::test]
async fn page_sizes_default_cap_and_reject_negatives() {
    let h = start().await;
    for i in 0..52 {
        h.create(customer(&format!("P{i:02}"), &format!("p{i}@example.com")))
            .await;
    }
    let first = h
        .list_in(TENANT, ListCustomersRequest::default())
        .await
        .unwrap();
    assert_eq!(first.customers.len(), 50, "default page size");
    assert!(!first.next_page_token.is_empty());
    let rest = h
        .list_in(
            TENANT,
            ListCustomersRequest {
                page_token: first.next_page_token,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.customers.len(), 2);
    assert!(rest.next_page_token.is_empty());

    let big = h
        .list_in(
            TENANT,
            ListCustomersRequest {
                page_size: 100_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        big.customers.len(),
        52,
        "large page sizes are lowered, not rejected"
    );
    assert!(big.next_page_token.is_empty());

    let err = expect_err(
        h.list_in(
            TENANT,
            ListCustomersRequest {
                page_size: -1,
                ..Default::default()
            },
        )
        .await,
    );
    assert_violation(&err, "page_size");
}

/// Keyset pagination: inserts during the walk neither duplicate nor skip the
/// customers that existed when it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_is_stable_under_concurrent_inserts() {
    let h = start().await;
    let mut seeded = BTreeSet::new();
    for i in 0..30 {
        let c = h
            .create(customer(
                &format!("Seed {i}"),
                &format!("seed{i}@example.com"),
            ))
            .await;
        seeded.insert(c.name);
    }

    let inserter = {
        let client = h.client();
        tokio::spawn(async move {
            let mut inserted = Vec::new();
            for i in 0..20 {
                let mut client = client.clone();
                let request = pb::CreateCustomerRequest {
                    customer: Some(customer(
                        &format!("Late {i}"),
                        &format!("late{i}@example.com"),
                    )),
                    request_id: String::new(),
                };
                let c = client
                    .create_customer(tenant_request(TENANT, request))
                    .await
                    .expect("concurrent create")
                    .into_inner()
                    .customer
                    .unwrap();
                inserted.push(c.name);
                tokio::task::yield_now().await;
            }
            inserted
        })
    };

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut request = ListCustomersRequest {
        page_size: 7,
        order_by: "create_time".into(),
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = h.list_in(TENANT, request.clone()).await.unwrap();
        pages += 1;
        assert!(page.customers.len() <= 7);
        for c in page.customers {
            *seen.entry(c.name).or_default() += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
        assert!(pages < 100, "the walk does not end");
    }
    let inserted = inserter.await.unwrap();

    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "seen twice: {duplicates:?}");
    for name in &seeded {
        assert_eq!(seen.get(name), Some(&1), "seeded {name} seen exactly once");
    }
    for name in seen.keys() {
        assert!(
            seeded.contains(name) || inserted.contains(name),
            "{name} came from nowhere"
        );
    }
    // Afterwards, a fresh walk sees all 50.
    assert_eq!(h.active_names_in(TENANT).await.len(), 50);
}

#[tokio::test]
async fn bad_page_tokens_are_rejected() {
    let h = start().await;
    for i in 0..5 {
        h.create(customer(&format!("T{i}"), &format!("t{i}@example.com")))
            .await;
        h.create_in(
            OTHER_TENANT,
            customer(&format!("T{i}"), &format!("t{i}@example.com")),
        )
        .await;
    }
    let base = ListCustomersRequest {
        page_size: 2,
        order_by: "create_time".into(),
        ..Default::default()
    };
    let token = h
        .list_in(TENANT, base.clone())
        .await
        .unwrap()
        .next_page_token;
    assert!(!token.is_empty());
    // The token works as issued, even with another page size.
    h.list_in(
        TENANT,
        ListCustomersRequest {
            page_token: token.clone(),
            ..base.clone()
        },
    )
    .await
    .unwrap();

    let mut tampered = token.clone().into_bytes();
    tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    let with_token = |t: &str| ListCustomersRequest {
        page_token: t.to_owned(),
        ..base.clone()
    };
    let cases: Vec<(&str, &str, ListCustomersRequest)> = vec![
        ("tampered", TENANT, with_token(&tampered)),
        ("garbage", TENANT, with_token("garbage")),
        ("not even base64", TENANT, with_token("%%%.***")),
        ("other tenant", OTHER_TENANT, with_token(&token)),
        (
            "other order_by",
            TENANT,
            ListCustomersRequest {
                order_by: "display_name".into(),
                ..with_token(&token)
            },
        ),
        (
            "other filter",
            TENANT,
            ListCustomersRequest {
                tag: "vip".into(),
                ..with_token(&token)
            },
        ),
        (
            "other state",
            TENANT,
            ListCustomersRequest {
                state: CustomerState::Merged as i32,
                ..with_token(&token)
            },
        ),
    ];
    for (case, tenant, request) in cases {
        let err = match h.list_in(tenant, request).await {
            Ok(page) => panic!("{case}: accepted, {} customers", page.customers.len()),
            Err(status) => status,
        };
        assert_error(&err, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
        assert!(
            violation_fields(&err).iter().any(|f| f == "page_token"),
            "{case}: {}",
            describe(&err)
        );
    }
}

#[tokio::test]
async fn search_matches_names_emails_phones_and_handles() {
    let h = start().await;
    let ada = h
        .create(pb::Customer {
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            ..customer("Countess", "ada@analytical.org")
        })
        .await;
    let grace = h
        .create(pb::Customer {
            phones: vec![phone("+14155550123")],
            ..customer("Grace Hopper", "grace@navy.example")
        })
        .await;
    let linus = h
        .create(pb::Customer {
            identities: vec![identity(Channel::Social, "mastodon", "PenguinFan")],
            ..customer("Linus", "linus@kernel.example")
        })
        .await;
    h.create_in(OTHER_TENANT, customer("Ada Lovelace", "ada@analytical.org"))
        .await;

    for (query, expected) in [
        ("LOVELACE", &ada),
        ("countess", &ada),
        ("ada", &ada),
        ("ANALYTICAL.ORG", &ada),
        ("hopper", &grace),
        ("555012", &grace),
        ("+1415555", &grace),
        ("penguinfan", &linus),
        ("GUINF", &linus),
    ] {
        let found = search_all(&h, query).await;
        assert_eq!(
            names(&found),
            vec![expected.name.clone()],
            "query {query:?}"
        );
    }
    assert!(search_all(&h, "nobody-matches-this").await.is_empty());
}

#[tokio::test]
async fn search_follows_renames_and_forgets_erased_customers() {
    // The search index (trigrams) is kept in step with every change of a
    // customer, not only with creates.
    let h = start().await;
    let mut ada = h
        .create(customer("Ada Lovelace", "ada@analytical.org"))
        .await;
    assert_eq!(
        names(&search_all(&h, "lovelace").await),
        vec![ada.name.clone()]
    );

    ada.display_name = "Ada Byron".into();
    let renamed = h
        .update(ada.clone(), &["display_name"])
        .await
        .expect("rename");
    assert!(
        search_all(&h, "lovelace").await.is_empty(),
        "old name forgotten"
    );
    assert_eq!(
        names(&search_all(&h, "byron").await),
        vec![renamed.name.clone()]
    );

    h.erase(&renamed.name, "erase-ada").await.expect("erase");
    assert!(
        search_all(&h, "byron").await.is_empty(),
        "erased customers are not found"
    );
    assert!(search_all(&h, "analytical").await.is_empty());
}

#[tokio::test]
async fn search_ranks_an_exact_identity_match_first() {
    let h = start().await;
    // These contain the query in their names and were created first.
    let fan = h.create(customer("zed fan club", "club@example.com")).await;
    let shaw = h
        .create(pb::Customer {
            given_name: "Zed".into(),
            family_name: "Shaw".into(),
            ..customer("Zed Shaw", "shaw@example.com")
        })
        .await;
    let holder = h
        .create(pb::Customer {
            identities: vec![identity(Channel::LiveChat, "", "zed")],
            ..customer("Visitor", "visitor@example.com")
        })
        .await;
    let found = search_all(&h, "ZED").await;
    assert_eq!(
        found.first().map(|c| c.name.as_str()),
        Some(holder.name.as_str())
    );
    assert_eq!(
        names(&found).into_iter().collect::<BTreeSet<_>>(),
        [fan.name, shaw.name, holder.name.clone()].into()
    );

    // Same with an email equal to the query.
    let mailer = h.create(customer("Mailer", "zed@zed.example")).await;
    let found = search_all(&h, "zed@zed.example").await;
    assert_eq!(names(&found), vec![mailer.name]);
    let found = search_all(&h, "zed").await;
    assert_eq!(found[0].name, holder.name);
}

#[tokio::test]
async fn search_validates_the_query_and_paginates() {
    let h = start().await;
    for bad in [String::new(), "q".repeat(201)] {
        let err = expect_err(
            search(
                &h,
                SearchCustomersRequest {
                    query: bad,
                    ..Default::default()
                },
            )
            .await,
        );
        assert_violation(&err, "query");
    }
    search(
        &h,
        SearchCustomersRequest {
            query: "q".repeat(200),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let mut created = BTreeSet::new();
    for i in 0..25 {
        let c = h
            .create(customer(
                &format!("Pager {i}"),
                &format!("pager{i}@example.com"),
            ))
            .await;
        created.insert(c.name);
    }
    let first = search(
        &h,
        SearchCustomersRequest {
            query: "pager".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(first.customers.len(), 20, "default page size");
    assert!(!first.next_page_token.is_empty());
    let second = search(
        &h,
        SearchCustomersRequest {
            query: "pager".into(),
            page_token: first.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(second.customers.len(), 5);
    assert!(second.next_page_token.is_empty());
    let seen: Vec<String> = names(&first.customers)
        .into_iter()
        .chain(names(&second.customers))
        .collect();
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), created);
    assert_eq!(seen.len(), 25, "no duplicates across pages");

    let capped = search(
        &h,
        SearchCustomersRequest {
            query: "pager".into(),
            page_size: 1_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(capped.customers.len(), 25);

    let small = search(
        &h,
        SearchCustomersRequest {
            query: "pager".into(),
            page_size: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(small.customers.len(), 10);
    let err = expect_err(
        search(
            &h,
            SearchCustomersRequest {
                query: "pager 1".into(),
                page_token: small.next_page_token,
                ..Default::default()
            },
        )
        .await,
    );
    assert_error(&err, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
}

#[tokio::test]
async fn search_returns_only_active_customers() {
    let h = start().await;
    let survivor = h
        .create(customer("Searchable Survivor", "keep@example.com"))
        .await;
    let merged = h
        .create(customer("Searchable Merged", "gone@example.com"))
        .await;
    let erased = h
        .create(customer("Searchable Erased", "erased@example.com"))
        .await;
    h.merge(&survivor.name, &merged.name, "").await.unwrap();
    h.erase(&erased.name, "").await.unwrap();

    let found = search_all(&h, "searchable").await;
    assert_eq!(names(&found), vec![survivor.name.clone()]);
    // The merged customer's email now belongs to the survivor.
    let found = search_all(&h, "gone@example.com").await;
    assert_eq!(names(&found), vec![survivor.name.clone()]);
    assert!(search_all(&h, "erased@example.com").await.is_empty());
    assert!(
        found
            .iter()
            .all(|c| c.state == CustomerState::Active as i32)
    );
}

#[tokio::test]
async fn lookup_finds_by_email_phone_and_channel_identity() {
    let h = start().await;
    let created = h
        .create(pb::Customer {
            phones: vec![phone("+14155550123")],
            identities: vec![identity(Channel::Social, "instagram", "AdaL")],
            ..customer("Ada", "Ada@Example.com")
        })
        .await;
    for key in [
        by_email("ada@example.com"),
        by_email("ADA@EXAMPLE.COM"),
        by_phone("+14155550123"),
        by_phone("+1 (415) 555-0123"),
        by_identity(Channel::Social, "instagram", "adal"),
        by_identity(Channel::Social, "instagram", "ADAL"),
    ] {
        let found = h
            .lookup_in(TENANT, key.clone())
            .await
            .unwrap_or_else(|s| panic!("lookup {key:?}: {}", describe(&s)));
        assert_eq!(found.name, created.name, "{key:?}");
    }
    for key in [
        by_email("nobody@example.com"),
        by_phone("+14155550000"),
        by_identity(Channel::Social, "twitter", "adal"),
        by_identity(Channel::LiveChat, "instagram", "adal"),
    ] {
        let err = expect_err(h.lookup_in(TENANT, key).await);
        assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    }
}

#[tokio::test]
async fn lookup_validates_its_input() {
    let h = start().await;
    let err = expect_err(
        h.client()
            .lookup_customer(tenant_request(
                TENANT,
                pb::LookupCustomerRequest { identity: None },
            ))
            .await,
    );
    assert_violation(&err, "identity");
    for key in [by_email("not-an-email"), by_phone("call me maybe")] {
        let err = expect_err(h.lookup_in(TENANT, key).await);
        assert_error(&err, Code::InvalidArgument, "INVALID_ARGUMENT");
    }
}

/// A list ordered by name continues after the last customer's name: the
/// token carries it, sealed — tokens travel in URLs and logs (and outlive
/// an erasure), so they must not show a name.
#[tokio::test]
async fn page_tokens_do_not_show_the_names_they_continue_after() {
    use base64::Engine as _;
    let h = start().await;
    for (name, email) in [
        ("Ada Secretname", "ada@example.com"),
        ("Bob Hiddenname", "bob@example.com"),
    ] {
        h.create(customer(name, email)).await;
    }
    let token = h
        .list_in(
            TENANT,
            ListCustomersRequest {
                page_size: 1,
                order_by: "display_name".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .next_page_token;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&token)
        .expect("a token is base64url");
    assert!(
        !raw.windows(10).any(|w| w == b"Secretname"),
        "the last customer's name is readable in the page token"
    );
    // And it still continues the list.
    let next = h
        .list_in(
            TENANT,
            ListCustomersRequest {
                page_size: 1,
                order_by: "display_name".into(),
                page_token: token,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(next.customers[0].display_name, "Bob Hiddenname");
}

/// Exact identity matches come first but page like the rest: a page never
/// holds more than `page_size`, and every match comes exactly once.
#[tokio::test]
async fn exact_matches_respect_the_page_size() {
    let h = start().await;
    let mut exact = BTreeSet::new();
    // One handle on five providers: five exact matches for "adal".
    for provider in ["instagram", "tiktok", "x", "facebook", "threads"] {
        let c = h
            .create(pb::Customer {
                identities: vec![identity(Channel::Social, provider, "adal")],
                ..Default::default()
            })
            .await;
        exact.insert(c.name);
    }
    // Text matches only ("adal" inside a longer name).
    let mut text = BTreeSet::new();
    for i in 0..3 {
        let c = h
            .create(customer(
                &format!("Madalena {i}"),
                &format!("m{i}@example.com"),
            ))
            .await;
        text.insert(c.name);
    }
    let mut request = SearchCustomersRequest {
        query: "adal".into(),
        page_size: 2,
        ..Default::default()
    };
    let mut pages = Vec::new();
    loop {
        let page = search(&h, request.clone()).await.unwrap();
        assert!(
            page.customers.len() <= 2,
            "a page of {}",
            page.customers.len()
        );
        pages.push(names(&page.customers));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    let seen: Vec<String> = pages.concat();
    assert_eq!(seen.len(), 8, "every match once: {pages:?}");
    // Exact matches first.
    assert_eq!(seen[..5].iter().cloned().collect::<BTreeSet<_>>(), exact);
    assert_eq!(seen[5..].iter().cloned().collect::<BTreeSet<_>>(), text);
}
