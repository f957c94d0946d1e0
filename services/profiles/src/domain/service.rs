//! Use-cases of the profiles service.
//!
//! Every mutation follows the write protocol of `rapport_usecase::write`:
//! answer a replayed `request_id` from the stored result; read; apply the
//! rules; commit the rows, their outbox events and the idempotency claim in
//! one transaction with an optimistic version check; on a lost race re-read
//! and try again (a client that sent an etag gets ABORTED instead, since it
//! asked to act on what it read).
use chrono::{DateTime, Duration, Utc};
use serde::{Serialize, de::DeserializeOwned};

use rapport_usecase::{Clock, Idempotency, Outcome, Write, page_of, write::MAX_ATTEMPTS};

use super::{
    error::{Error, Violations},
    model::*,
    repository::*,
    rules::{self, FieldUpdate, IdentityKind},
    values::{Email, Phone},
};

/// How far in the future a consent capture time may be (clock skew).
const MAX_CAPTURE_SKEW: Duration = Duration::minutes(5);

/// The profiles use-cases over a repository and a clock.
#[derive(Debug, Clone)]
pub struct Profiles<R, C> {
    repo: R,
    clock: C,
    /// The tenant's time zone, for customers without one of their own.
    default_zone: chrono_tz::Tz,
    /// The other services holding customer data: each must confirm an
    /// erasure before its receipt is complete.
    erasure_services: Vec<String>,
    /// When an incomplete erasure is reported, after it began.
    erasure_overdue_after: Duration,
}

/// Input of [`Profiles::set_consent`].
#[derive(Debug, Clone)]
pub struct SetConsent {
    /// Channel.
    pub channel: Channel,
    /// Purpose.
    pub purpose: ConsentPurpose,
    /// Decision.
    pub status: ConsentStatus,
    /// Where captured.
    pub source: String,
    /// Evidence.
    pub evidence: String,
    /// When the customer decided; now when `None`.
    pub capture_time: Option<DateTime<Utc>>,
    /// The privacy notice shown when they decided (empty: not recorded).
    pub privacy_notice_version: String,
}

/// An identity to look up.
#[derive(Debug, Clone)]
pub enum IdentityQuery {
    /// By email.
    Email(Email),
    /// By phone.
    Phone(Phone),
    /// By channel identity.
    Channel(ChannelIdentity),
}

/// The identity index key of `query`.
fn identity_key(query: &IdentityQuery) -> (IdentityKind, String) {
    match query {
        IdentityQuery::Email(e) => (IdentityKind::Email, e.normalized()),
        IdentityQuery::Phone(p) => (IdentityKind::Phone, p.as_str().to_owned()),
        IdentityQuery::Channel(c) => (IdentityKind::Channel, rules::channel_key(c).0),
    }
}

/// Position in search results: exact identity matches come first, by id,
/// then text matches, by id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SearchCursor {
    /// Within the exact matches, after this one.
    Exact(CustomerId),
    /// Within the text matches, after this one (from the first when `None`).
    Text(Option<CustomerId>),
}

/// Result of a merge.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Merged {
    /// The survivor after the merge.
    pub survivor: Customer,
    /// The record.
    pub record: MergeRecord,
}

/// Result of a consent change.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ConsentRecorded {
    /// Ledger entry.
    pub event: ConsentEvent,
    /// Customer after.
    pub customer: Customer,
}

/// Result of a stage change.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StageChanged {
    /// Customer after.
    pub customer: Customer,
    /// History entry.
    pub event: LifecycleEvent,
}

impl<R: Repository, C: Clock> Profiles<R, C> {
    /// Use-cases over `repo`, telling time by `clock`.
    pub fn new(repo: R, clock: C) -> Self {
        Self {
            repo,
            clock,
            default_zone: chrono_tz::UTC,
            erasure_services: Vec::new(),
            erasure_overdue_after: Duration::hours(24),
        }
    }

    /// With `services` as the other services that must confirm every
    /// erasure (those holding customer data), an erasure still incomplete
    /// `overdue_after` after it began being reported.
    pub fn with_erasure_services(mut self, services: Vec<String>, overdue_after: Duration) -> Self {
        self.erasure_services = services;
        self.erasure_overdue_after = overdue_after;
        self
    }

    /// An erasure receipt: how far the erasure has reached.
    pub async fn erasure_receipt(
        &self,
        tenant: &Tenant,
        id: ErasureReceiptId,
    ) -> Result<ErasureReceipt, Error> {
        self.repo
            .erasure_receipt(tenant, id)
            .await?
            .ok_or(Error::ReceiptNotFound(id))
    }

    /// With `zone` as the time zone of customers who have none (their
    /// quiet hours, birthdays).
    pub fn with_default_zone(mut self, zone: chrono_tz::Tz) -> Self {
        self.default_zone = zone;
        self
    }

    /// May `id` be contacted now on `channel` (or which channel, when
    /// `None`) for `purpose`: the one contact policy (see
    /// [`super::contact`]). Erased and merged customers are answered, not
    /// NOT_FOUND, so that a sender learns why.
    pub async fn contact_policy(
        &self,
        tenant: &Tenant,
        id: CustomerId,
        channel: Option<Channel>,
        purpose: ConsentPurpose,
    ) -> Result<super::contact::Decision, Error> {
        let c = self
            .repo
            .get(tenant, id)
            .await?
            .ok_or(Error::NotFound(id))?;
        Ok(super::contact::decide(
            &c,
            channel,
            purpose,
            self.clock.now(),
            self.default_zone,
        ))
    }

    /// The current time of the service's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Commits `change` with `result` as the answer stored under the
    /// request's key. `None`: lost a race; read again and retry.
    async fn commit<T: Serialize + DeserializeOwned>(
        &self,
        w: &Write<'_, R>,
        mut change: ChangeSet,
        subject: CustomerId,
        result: T,
        keys: &[rules::IdentityKey],
    ) -> Result<Option<T>, Error> {
        change.claim = w.claim(subject, &result)?;
        let tenant = change.tenant.clone();
        match w.finish(self.repo.commit(change).await, result).await? {
            Outcome::Done(r) => Ok(Some(r)),
            Outcome::Retry => Ok(None),
            Outcome::Other(Clash::Failed(e)) => Err(e),
            Outcome::Other(Clash::IdentityTaken { kind, value }) => {
                // Lost a race with another writer: name the holder as the
                // pre-check would have.
                let holder = self.repo.holders(&tenant, &[(kind, value.clone())]).await?;
                match holder.first() {
                    // Held by the customer being written (its own old
                    // identity): some other identity clashed; re-check all.
                    Some((_, holder)) if *holder != subject => {
                        let field = keys
                            .iter()
                            .find(|k| k.kind == kind && k.value == value)
                            .map(|k| k.field.clone())
                            .unwrap_or_default();
                        Err(Error::IdentityTaken {
                            field,
                            holder: *holder,
                        })
                    }
                    _ => Ok(None),
                }
            }
        }
    }

    /// Fails with IdentityTaken if any identity of `profile` belongs to a
    /// customer other than `owner`.
    async fn check_identities(
        &self,
        tenant: &Tenant,
        keys: &[rules::IdentityKey],
        owners: &[CustomerId],
    ) -> Result<(), Error> {
        let lookup: Vec<(IdentityKind, String)> =
            keys.iter().map(|k| (k.kind, k.value.clone())).collect();
        for (i, holder) in self.repo.holders(tenant, &lookup).await? {
            if !owners.contains(&holder) {
                return Err(Error::IdentityTaken {
                    field: keys[i].field.clone(),
                    holder,
                });
            }
        }
        Ok(())
    }

    /// Creates a customer at stage AWARENESS.
    pub async fn create(
        &self,
        tenant: &Tenant,
        profile: Profile,
        idem: Option<Idempotency>,
    ) -> Result<Customer, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self.create_once(&w, tenant, profile).await;
        w.settle(result).await
    }

    /// Applies `updates`; `etag` (when given) must match.
    pub async fn update(
        &self,
        tenant: &Tenant,
        id: CustomerId,
        updates: Vec<FieldUpdate>,
        etag: Option<String>,
        idem: Option<Idempotency>,
    ) -> Result<Customer, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self.update_once(&w, tenant, id, updates, etag).await;
        w.settle(result).await
    }

    /// Merges `merged` into `survivor`.
    pub async fn merge(
        &self,
        tenant: &Tenant,
        survivor: CustomerId,
        merged: CustomerId,
        idem: Option<Idempotency>,
    ) -> Result<Merged, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self.merge_once(&w, tenant, survivor, merged).await;
        w.settle(result).await
    }

    /// Appends a consent decision to the ledger and updates current consent.
    pub async fn set_consent(
        &self,
        tenant: &Tenant,
        id: CustomerId,
        input: SetConsent,
        idem: Option<Idempotency>,
    ) -> Result<ConsentRecorded, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self.set_consent_once(&w, tenant, id, input).await;
        w.settle(result).await
    }

    /// Moves the customer to `stage`.
    pub async fn change_stage(
        &self,
        tenant: &Tenant,
        id: CustomerId,
        stage: LifecycleStage,
        reason: String,
        etag: Option<String>,
        idem: Option<Idempotency>,
    ) -> Result<StageChanged, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self
            .change_stage_once(&w, tenant, id, stage, reason, etag)
            .await;
        w.settle(result).await
    }

    /// Erases the customer's personal data and keeps a receipt.
    pub async fn erase(
        &self,
        tenant: &Tenant,
        id: CustomerId,
        idem: Option<Idempotency>,
    ) -> Result<ErasureReceipt, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self.erase_once(&w, tenant, id).await;
        w.settle(result).await
    }

    async fn load(&self, tenant: &Tenant, id: CustomerId) -> Result<Customer, Error> {
        self.repo.get(tenant, id).await?.ok_or(Error::NotFound(id))
    }

    async fn load_active(&self, tenant: &Tenant, id: CustomerId) -> Result<Customer, Error> {
        let c = self.load(tenant, id).await?;
        if c.state != CustomerState::Active {
            return Err(Error::NotActive(id, c.state));
        }
        Ok(c)
    }

    fn check_etag(c: &Customer, etag: Option<&str>) -> Result<(), Error> {
        match etag {
            Some(e) if e != c.etag() => Err(Error::EtagMismatch),
            _ => Ok(()),
        }
    }

    /// The body of [`Self::create`].
    async fn create_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        mut profile: Profile,
    ) -> Result<Customer, Error> {
        // No replay lookup first, unlike the other mutations: a create has
        // nothing to load, and a retry is answered anyway — its identities
        // are taken by its first attempt (see `settle`), or, with none, its
        // claim of the request id fails at commit. One read less per create.
        let mut v = Violations::default();
        rules::normalize_profile(&mut profile, "customer.", &mut v);
        v.check()?;
        let keys = rules::identity_keys(&profile, "customer.");
        for _ in 0..MAX_ATTEMPTS {
            self.check_identities(tenant, &keys, &[]).await?;
            let now = self.clock.now();
            let customer = Customer::new_active(profile.clone(), now);
            let mut change = ChangeSet::new(tenant, now);
            change.lifecycle_events.push(LifecycleEvent {
                id: LifecycleEventId::generate(),
                customer: customer.id,
                from_stage: None,
                to_stage: LifecycleStage::Awareness,
                reason: "created".to_owned(),
                create_time: now,
            });
            change.events.push(DomainEvent::Created {
                customer: customer.id,
                stage: customer.lifecycle_stage,
            });
            change.birthdays.extend(super::birthday::timer(
                None,
                &customer,
                self.default_zone,
                now,
            ));
            change
                .customers
                .push(CustomerWrite::Insert(customer.clone()));
            if let Some(c) = self
                .commit(w, change, customer.id, customer.clone(), &keys)
                .await?
            {
                return Ok(c);
            }
        }
        Err(w.exhausted())
    }

    /// One customer, tombstones included.
    pub async fn get(&self, tenant: &Tenant, id: CustomerId) -> Result<Customer, Error> {
        self.load(tenant, id).await
    }

    /// The body of [`Self::update`].
    async fn update_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        id: CustomerId,
        updates: Vec<FieldUpdate>,
        etag: Option<String>,
    ) -> Result<Customer, Error> {
        if let Some(prior) = w.replay().await? {
            return Ok(prior);
        }
        for _ in 0..MAX_ATTEMPTS {
            let current = self.load_active(tenant, id).await?;
            Self::check_etag(&current, etag.as_deref())?;
            let mut profile = rules::apply_updates(&current.profile, updates.clone());
            let mut v = Violations::default();
            rules::normalize_profile(&mut profile, "customer.", &mut v);
            v.check()?;
            let keys = rules::identity_keys(&profile, "customer.");
            self.check_identities(tenant, &keys, &[id]).await?;
            let changed = rules::changed_paths(&current.profile, &profile);
            if changed.is_empty() {
                // Nothing changes: no new version, no event. With a request
                // id the answer is still stored under it, guarded by the
                // version read: a retry after someone else's change must
                // replay this answer, not apply the request again over theirs.
                if w.claim(id, &current)?.is_none() {
                    return Ok(current);
                }
                let mut change = ChangeSet::new(tenant, self.clock.now());
                change.customers.push(CustomerWrite::Unchanged {
                    customer: id,
                    expected_version: current.version,
                });
                match self.commit(w, change, id, current, &keys).await? {
                    Some(c) => return Ok(c),
                    None if etag.is_some() => return Err(Error::EtagMismatch),
                    None => continue,
                }
            }
            let now = self.clock.now();
            let expected_version = current.version;
            let updated = Customer {
                profile,
                update_time: now,
                version: current.version + 1,
                ..current.clone()
            };
            let mut change = ChangeSet::new(tenant, now);
            change.birthdays.extend(super::birthday::timer(
                Some(&current),
                &updated,
                self.default_zone,
                now,
            ));
            change.events.push(DomainEvent::Updated {
                customer: id,
                changed_paths: changed,
            });
            change.customers.push(CustomerWrite::Update {
                customer: updated.clone(),
                expected_version,
            });
            match self.commit(w, change, id, updated, &keys).await? {
                Some(c) => return Ok(c),
                None if etag.is_some() => return Err(Error::EtagMismatch),
                None => continue,
            }
        }
        Err(w.exhausted())
    }

    /// A page of customers and the cursor of the next page.
    pub async fn list(
        &self,
        tenant: &Tenant,
        filter: &ListFilter,
        order: ListOrder,
        after: Option<ListCursor>,
        limit: u32,
    ) -> Result<(Vec<Customer>, Option<ListCursor>), Error> {
        // One extra row tells whether another page exists.
        let rows = self
            .repo
            .list(tenant, filter, order, after.as_ref(), limit + 1)
            .await?;
        Ok(page_of(rows, limit, |c| cursor_of(c, order.key)))
    }

    /// Free-text search; customers holding an identity equal to the query come first.
    pub async fn search(
        &self,
        tenant: &Tenant,
        query: &str,
        after: Option<SearchCursor>,
        limit: u32,
    ) -> Result<(Vec<Customer>, Option<SearchCursor>), Error> {
        let needle = query.trim().to_lowercase();
        let mut match_keys = vec![needle.clone()];
        if let Ok(phone) = Phone::parse(query) {
            match_keys.push(phone.as_str().to_owned());
        }
        let mut exact = self.repo.exact_matches(tenant, &match_keys).await?;
        exact.sort_by_key(|c| c.id);
        let exclude: Vec<CustomerId> = exact.iter().map(|c| c.id).collect();
        let limit = limit as usize;
        let text_after = match after {
            Some(SearchCursor::Text(after)) => after,
            exact_phase => {
                // Exact matches first, page by page like the rest: a page
                // never holds more than was asked for.
                let from = match exact_phase {
                    Some(SearchCursor::Exact(after)) => exact.partition_point(|c| c.id <= after),
                    _ => 0,
                };
                let mut page: Vec<Customer> = exact.into_iter().skip(from).collect();
                if page.len() > limit {
                    page.truncate(limit);
                    let next = page.last().map(|c| SearchCursor::Exact(c.id));
                    return Ok((page, next));
                }
                let room = limit - page.len();
                // One more than fits tells whether another page follows.
                let mut rest = self
                    .repo
                    .text_matches(tenant, &needle, &exclude, None, room as u32 + 1)
                    .await?;
                let more = rest.len() > room;
                rest.truncate(room);
                page.extend(rest);
                let next = more.then(|| {
                    // The page ends in text matches, or (room 0) with the
                    // last exact match: text matches start from the first.
                    let last_text = page.last().map(|c| c.id).filter(|id| !exclude.contains(id));
                    SearchCursor::Text(last_text)
                });
                return Ok((page, next));
            }
        };
        let mut page = self
            .repo
            .text_matches(tenant, &needle, &exclude, text_after, limit as u32 + 1)
            .await?;
        let more = page.len() > limit;
        page.truncate(limit);
        let next = more
            .then(|| page.last().map(|c| SearchCursor::Text(Some(c.id))))
            .flatten();
        Ok((page, next))
    }

    /// The active customer holding an identity.
    pub async fn lookup(
        &self,
        tenant: &Tenant,
        query: &IdentityQuery,
    ) -> Result<Option<Customer>, Error> {
        let key = identity_key(query);
        let Some((_, holder)) = self.repo.holders(tenant, &[key]).await?.into_iter().next() else {
            return Ok(None);
        };
        let c = self.repo.get(tenant, holder).await?;
        Ok(c.filter(|c| c.state == CustomerState::Active))
    }

    /// The active customer holding `query`'s identity, or a new one made of
    /// `profile` (which holds that identity), and whether it was created
    /// now. Idempotent on the identity: a create that loses the race for
    /// it (another call created the holder meanwhile) answers the holder.
    /// A merged holder answers its survivor.
    pub async fn resolve(
        &self,
        tenant: &Tenant,
        query: &IdentityQuery,
        profile: Profile,
    ) -> Result<(Customer, bool), Error> {
        for _ in 0..MAX_ATTEMPTS {
            if let Some(c) = self.holder(tenant, query).await? {
                return Ok((c, false));
            }
            match self.create(tenant, profile.clone(), None).await {
                Ok(c) => return Ok((c, true)),
                Err(Error::IdentityTaken { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        // Taken on every attempt yet never found active: the holder is
        // changing under us (being merged or erased right now).
        Err(Error::Conflict)
    }

    /// [`Self::lookup`], following a merged holder to its survivor.
    async fn holder(
        &self,
        tenant: &Tenant,
        query: &IdentityQuery,
    ) -> Result<Option<Customer>, Error> {
        let key = identity_key(query);
        let Some((_, mut id)) = self.repo.holders(tenant, &[key]).await?.into_iter().next() else {
            return Ok(None);
        };
        // A merge chain is short; the bound only guards against a cycle.
        for _ in 0..8 {
            let Some(c) = self.repo.get(tenant, id).await? else {
                return Ok(None);
            };
            match (c.state, c.merged_into) {
                (CustomerState::Active, _) => return Ok(Some(c)),
                (CustomerState::Merged, Some(survivor)) => id = survivor,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The body of [`Self::merge`].
    async fn merge_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        survivor_id: CustomerId,
        merged_id: CustomerId,
    ) -> Result<Merged, Error> {
        if survivor_id == merged_id {
            return Err(Violations::one("merged", "must differ from survivor").into());
        }
        if let Some(prior) = w.replay().await? {
            return Ok(prior);
        }
        for _ in 0..MAX_ATTEMPTS {
            let survivor = self.load_active(tenant, survivor_id).await?;
            let merged = self.load_active(tenant, merged_id).await?;
            let mut profile = rules::merge_profiles(&survivor.profile, &merged.profile);
            let mut v = Violations::default();
            rules::normalize_profile(&mut profile, "", &mut v);
            if !v.is_empty() {
                let why: Vec<String> = v.0.into_iter().map(|(f, d)| format!("{f}: {d}")).collect();
                return Err(Violations::one(
                    "merged",
                    format!("the merged profile would break limits: {}", why.join("; ")),
                )
                .into());
            }
            let now = self.clock.now();
            let record = MergeRecord {
                id: MergeRecordId::generate(),
                survivor: survivor_id,
                merged: merged_id,
                create_time: now,
            };
            let stage = survivor.lifecycle_stage.max(merged.lifecycle_stage);
            let consents = rules::merge_consents(&survivor.consents, &merged.consents);
            let tombstone = Customer {
                profile: Profile::default(),
                consents: Vec::new(),
                state: CustomerState::Merged,
                merged_into: Some(survivor_id),
                update_time: now,
                version: merged.version + 1,
                ..merged.clone()
            };
            let changed = rules::changed_paths(&survivor.profile, &profile);
            let new_survivor = Customer {
                profile,
                consents,
                lifecycle_stage: stage,
                update_time: now,
                version: survivor.version + 1,
                ..survivor.clone()
            };
            let mut change = ChangeSet::new(tenant, now);
            change.birthdays.extend(super::birthday::timer(
                Some(&merged),
                &tombstone,
                self.default_zone,
                now,
            ));
            change.birthdays.extend(super::birthday::timer(
                Some(&survivor),
                &new_survivor,
                self.default_zone,
                now,
            ));
            change.customers.push(CustomerWrite::Update {
                customer: tombstone,
                expected_version: merged.version,
            });
            change.customers.push(CustomerWrite::Update {
                customer: new_survivor.clone(),
                expected_version: survivor.version,
            });
            change.move_history = Some((merged_id, survivor_id));
            if stage != survivor.lifecycle_stage {
                change.lifecycle_events.push(LifecycleEvent {
                    id: LifecycleEventId::generate(),
                    customer: survivor_id,
                    from_stage: Some(survivor.lifecycle_stage),
                    to_stage: stage,
                    reason: "merge".to_owned(),
                    create_time: now,
                });
                change.events.push(DomainEvent::StageChanged {
                    customer: survivor_id,
                    from: survivor.lifecycle_stage,
                    to: stage,
                });
            }
            change.merge_record = Some(record.clone());
            change.events.push(DomainEvent::Merged {
                survivor: survivor_id,
                merged: merged_id,
                record: record.id,
            });
            if !changed.is_empty() {
                change.events.push(DomainEvent::Updated {
                    customer: survivor_id,
                    changed_paths: changed,
                });
            }
            let result = Merged {
                survivor: new_survivor,
                record,
            };
            if let Some(m) = self.commit(w, change, survivor_id, result, &[]).await? {
                return Ok(m);
            }
        }
        Err(w.exhausted())
    }

    /// The body of [`Self::set_consent`].
    async fn set_consent_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        id: CustomerId,
        input: SetConsent,
    ) -> Result<ConsentRecorded, Error> {
        let now = self.clock.now();
        if input
            .capture_time
            .is_some_and(|t| t > now + MAX_CAPTURE_SKEW)
        {
            return Err(Violations::one("capture_time", "must not be in the future").into());
        }
        if let Some(prior) = w.replay().await? {
            return Ok(prior);
        }
        for _ in 0..MAX_ATTEMPTS {
            let current = self.load_active(tenant, id).await?;
            let now = self.clock.now();
            let capture_time = input.capture_time.unwrap_or(now);
            let event = ConsentEvent {
                id: ConsentEventId::generate(),
                customer: id,
                channel: input.channel,
                purpose: input.purpose,
                status: input.status,
                source: input.source.clone(),
                evidence: input.evidence.clone(),
                capture_time,
                record_time: now,
                privacy_notice_version: input.privacy_notice_version.clone(),
            };
            let mut consents = current.consents.clone();
            let changed = rules::apply_consent(
                &mut consents,
                ConsentState {
                    channel: input.channel,
                    purpose: input.purpose,
                    status: input.status,
                    source: input.source.clone(),
                    capture_time,
                    privacy_notice_version: input.privacy_notice_version.clone(),
                },
            );
            let expected_version = current.version;
            let customer = if changed {
                Customer {
                    consents,
                    update_time: now,
                    version: current.version + 1,
                    ..current
                }
            } else {
                current
            };
            let mut change = ChangeSet::new(tenant, now);
            change.consent_events.push(event.clone());
            if !changed {
                // Nothing changes, yet the ledger grows: the commit must
                // still fail if the customer was erased or merged since it
                // was read (it would keep personal data the erasure removed).
                change.customers.push(CustomerWrite::Unchanged {
                    customer: id,
                    expected_version,
                });
            }
            if changed {
                change.customers.push(CustomerWrite::Update {
                    customer: customer.clone(),
                    expected_version,
                });
                change.events.push(DomainEvent::ConsentChanged {
                    customer: id,
                    channel: input.channel,
                    purpose: input.purpose,
                    status: input.status,
                });
            }
            let result = ConsentRecorded { event, customer };
            if let Some(r) = self.commit(w, change, id, result, &[]).await? {
                return Ok(r);
            }
        }
        Err(w.exhausted())
    }

    /// The body of [`Self::change_stage`].
    async fn change_stage_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        id: CustomerId,
        stage: LifecycleStage,
        reason: String,
        etag: Option<String>,
    ) -> Result<StageChanged, Error> {
        if let Some(prior) = w.replay().await? {
            return Ok(prior);
        }
        for _ in 0..MAX_ATTEMPTS {
            let current = self.load_active(tenant, id).await?;
            Self::check_etag(&current, etag.as_deref())?;
            if current.lifecycle_stage == stage {
                return Err(Error::StageUnchanged);
            }
            let now = self.clock.now();
            let event = LifecycleEvent {
                id: LifecycleEventId::generate(),
                customer: id,
                from_stage: Some(current.lifecycle_stage),
                to_stage: stage,
                reason: reason.clone(),
                create_time: now,
            };
            let from = current.lifecycle_stage;
            let expected_version = current.version;
            let customer = Customer {
                lifecycle_stage: stage,
                update_time: now,
                version: current.version + 1,
                ..current
            };
            let mut change = ChangeSet::new(tenant, now);
            change.customers.push(CustomerWrite::Update {
                customer: customer.clone(),
                expected_version,
            });
            change.lifecycle_events.push(event.clone());
            change.events.push(DomainEvent::StageChanged {
                customer: id,
                from,
                to: stage,
            });
            match self
                .commit(w, change, id, StageChanged { customer, event }, &[])
                .await?
            {
                Some(r) => return Ok(r),
                None if etag.is_some() => return Err(Error::EtagMismatch),
                None => continue,
            }
        }
        Err(w.exhausted())
    }

    /// A page of the consent ledger.
    pub async fn consent_events(
        &self,
        tenant: &Tenant,
        id: CustomerId,
        after: Option<LedgerCursor>,
        limit: u32,
    ) -> Result<(Vec<ConsentEvent>, Option<LedgerCursor>), Error> {
        self.load(tenant, id).await?;
        let rows = self
            .repo
            .consent_events(tenant, id, after, limit + 1)
            .await?;
        Ok(page_of(rows, limit, |e| {
            (e.capture_time.timestamp_micros(), e.id.0)
        }))
    }

    /// A page of the lifecycle history.
    pub async fn lifecycle_events(
        &self,
        tenant: &Tenant,
        id: CustomerId,
        after: Option<LedgerCursor>,
        limit: u32,
    ) -> Result<(Vec<LifecycleEvent>, Option<LedgerCursor>), Error> {
        self.load(tenant, id).await?;
        let rows = self
            .repo
            .lifecycle_events(tenant, id, after, limit + 1)
            .await?;
        Ok(page_of(rows, limit, |e| {
            (e.create_time.timestamp_micros(), e.id.0)
        }))
    }

    /// Everything held about one customer, as one JSON document.
    pub async fn export(
        &self,
        tenant: &Tenant,
        id: CustomerId,
    ) -> Result<serde_json::Value, Error> {
        let customer = self.load(tenant, id).await?;
        let mut consent = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = self.consent_events(tenant, id, after, 500).await?;
            consent.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let mut lifecycle = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = self.lifecycle_events(tenant, id, after, 500).await?;
            lifecycle.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let merges = self.repo.merge_records(tenant, id).await?;
        Ok(serde_json::json!({
            "schema": "rapport.profiles.export.v1",
            "export_time": self.clock.now(),
            "customer": customer,
            "consent_events": consent,
            "lifecycle_events": lifecycle,
            "merge_records": merges,
        }))
    }

    /// The body of [`Self::erase`].
    async fn erase_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        id: CustomerId,
    ) -> Result<ErasureReceipt, Error> {
        if let Some(prior) = w.replay().await? {
            return Ok(prior);
        }
        for _ in 0..MAX_ATTEMPTS {
            let current = self.load_active(tenant, id).await?;
            let now = self.clock.now();
            let receipt = ErasureReceipt {
                id: ErasureReceiptId::generate(),
                customer: id,
                erase_time: now,
                erased_fields: rules::ERASED_FIELDS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                // Profiles' own part is erased by this very change.
                confirmations: vec![ErasureConfirmation {
                    service: THIS_SERVICE.to_owned(),
                    confirm_time: now,
                }],
                awaited: self.erasure_services.clone(),
                complete_time: self.erasure_services.is_empty().then_some(now),
            };
            let expected_version = current.version;
            // Consent decisions stay (channel, purpose, status, time: the proof
            // a business may need to keep); where they came from does not.
            let consents = current
                .consents
                .iter()
                .map(|c| ConsentState {
                    source: String::new(),
                    ..c.clone()
                })
                .collect();
            let tombstone = Customer {
                profile: Profile::default(),
                consents,
                state: CustomerState::Erased,
                update_time: now,
                version: current.version + 1,
                ..current.clone()
            };
            let mut change = ChangeSet::new(tenant, now);
            change.birthdays.extend(super::birthday::timer(
                Some(&current),
                &tombstone,
                self.default_zone,
                now,
            ));
            change.customers.push(CustomerWrite::Update {
                customer: tombstone,
                expected_version,
            });
            change.erasure = Some(receipt.clone());
            change.events.push(DomainEvent::Erased {
                customer: id,
                receipt: receipt.id,
            });
            if receipt.complete_time.is_some() {
                // Nobody else holds customer data: complete already.
                change.events.push(DomainEvent::ErasureCompleted {
                    customer: id,
                    receipt: receipt.id,
                });
            } else {
                change.erasure_overdue = Some(now + self.erasure_overdue_after);
            }
            if let Some(r) = self.commit(w, change, id, receipt.clone(), &[]).await? {
                return Ok(r);
            }
        }
        Err(w.exhausted())
    }
}

/// The keyset cursor of a row for a sort key.
fn cursor_of(c: &Customer, key: SortKey) -> ListCursor {
    match key {
        SortKey::CreateTime => ListCursor {
            time: Some(c.create_time.timestamp_micros()),
            text: None,
            id: c.id.0,
        },
        SortKey::UpdateTime => ListCursor {
            time: Some(c.update_time.timestamp_micros()),
            text: None,
            id: c.id.0,
        },
        SortKey::DisplayName => ListCursor {
            time: None,
            text: Some(c.profile.display_name.clone()),
            id: c.id.0,
        },
    }
}
