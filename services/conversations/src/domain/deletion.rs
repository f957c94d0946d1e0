//! Deleting business calendars and SLA policies. An applied SLA keeps a
//! pinned copy of its policy, so deleting a policy never touches open
//! conversations; a calendar an SLA policy, an inbox or an open
//! conversation's pinned SLA names cannot be deleted.
use rapport_usecase::{Clock, Idempotency, Write, write::MAX_ATTEMPTS};

use super::{
    calendars::Calendar,
    error::{Error, Kind},
    managed::Managed,
    model::{Agent, Tenant},
    ports::Customers,
    repository::*,
    service::Conversations,
    sla::SlaPolicy,
};

/// Page size when scanning a tenant's policies for references.
const SCAN_PAGE: u32 = 500;

impl<R: Repository, P: Customers, C: Clock> Conversations<R, P, C> {
    /// Deletes a business calendar or an SLA policy; answers what was
    /// deleted (a retry with the same request id answers it again).
    pub async fn delete_managed<T: Managed>(
        &self,
        tenant: &Tenant,
        id: uuid::Uuid,
        etag: Option<String>,
        idem: Option<Idempotency>,
    ) -> Result<T, Error> {
        let w = Write::new(self.repo(), tenant, idem.as_ref());
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            for _ in 0..MAX_ATTEMPTS {
                let current: T = self.managed(tenant, id).await?;
                if etag.as_ref().is_some_and(|e| *e != current.etag()) {
                    return Err(Error::EtagMismatch);
                }
                if T::KIND == Kind::BusinessCalendar {
                    self.check_calendar_unused(tenant, id).await?;
                }
                let mut change = ChangeSet::new(tenant, self.clock().now());
                change.managed_deletes.push(ManagedDelete {
                    kind: T::KIND,
                    id,
                    expected_version: current.version(),
                });
                match self.commit_as(&w, change, id, current).await? {
                    Ok(t) => return Ok(t),
                    Err(Clash::Failed(Error::Conflict)) => continue,
                    Err(clash) => return Err(clash.into()),
                }
            }
            Err(Error::Conflict)
        }
        .await;
        w.settle(result).await
    }

    /// `InUse` when an SLA policy of the tenant, an agent (promise
    /// reminders, "due today"), an inbox, or the pinned SLA of a
    /// conversation still worked counts time on calendar `id`.
    async fn check_calendar_unused(&self, tenant: &Tenant, id: uuid::Uuid) -> Result<(), Error> {
        let calendar = Calendar::name_of(id);
        let user = match self.calendar_user::<SlaPolicy>(tenant, id).await? {
            Some(name) => Some(name),
            None => self.calendar_user::<Agent>(tenant, id).await?,
        };
        if let Some(name) = user {
            return Err(Error::InUse(calendar, name));
        }
        let mut after = None;
        loop {
            let page = self.repo().inboxes(tenant, after, SCAN_PAGE).await?;
            if let Some(i) = page.iter().find(|i| i.business_calendar == calendar) {
                return Err(Error::InUse(calendar, format!("inboxes/{}", i.id)));
            }
            if page.len() < SCAN_PAGE as usize {
                break;
            }
            after = page.last().map(|i| i.id);
        }
        match self
            .repo()
            .pinned_to_calendar(tenant, id, None, 1)
            .await?
            .first()
        {
            Some(c) => Err(Error::InUse(calendar, format!("conversations/{}", c.id))),
            None => Ok(()),
        }
    }

    /// The first resource of kind `T` that names calendar `id`.
    async fn calendar_user<T: Managed>(
        &self,
        tenant: &Tenant,
        id: uuid::Uuid,
    ) -> Result<Option<String>, Error> {
        let mut after = None;
        loop {
            let page: Vec<T> = self.repo().managed_list(tenant, after, SCAN_PAGE).await?;
            if let Some(p) = page
                .iter()
                .find(|p| p.calendars().iter().any(|(_, c)| *c == id))
            {
                return Ok(Some(p.name()));
            }
            if page.len() < SCAN_PAGE as usize {
                return Ok(None);
            }
            after = page.last().map(Managed::id);
        }
    }
}
