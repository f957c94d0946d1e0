//! The use-case of ordering SLA policies: one request sets the evaluation
//! order of all of them, in one transaction, so no reader ever sees two
//! policies swapped half-way. Create, get, list and update are the managed
//! ones ([`super::directory`]).
use std::collections::BTreeMap;

use rapport_usecase::{Clock, Idempotency, Violations, Write, write::MAX_ATTEMPTS};

use super::{
    error::Error,
    managed::Managed,
    model::Tenant,
    ports::Customers,
    repository::*,
    service::Conversations,
    sla::{SlaPolicy, SlaPolicyId},
};

/// Most SLA policies of a tenant that one reorder handles.
pub const MAX_POLICIES: usize = 500;

impl<R: Repository, P: Customers, C: Clock> Conversations<R, P, C> {
    /// Sets the order of evaluation: `order` names every SLA policy of the
    /// tenant once; the first gets position 0, the next 1, and so on. Only
    /// policies whose position changes get a new revision. Answers the
    /// policies in the new order.
    pub async fn reorder_sla_policies(
        &self,
        tenant: &Tenant,
        order: Vec<SlaPolicyId>,
        idem: Option<Idempotency>,
    ) -> Result<Vec<SlaPolicy>, Error> {
        let w = Write::new(self.repo(), tenant, idem.as_ref());
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            for _ in 0..MAX_ATTEMPTS {
                let all: Vec<SlaPolicy> = self
                    .repo()
                    .managed_list(tenant, None, MAX_POLICIES as u32 + 1)
                    .await?;
                if all.len() > MAX_POLICIES {
                    return Err(Violations::one(
                        "names",
                        format!("a tenant with more than {MAX_POLICIES} policies cannot be reordered at once"),
                    )
                    .into());
                }
                let mut by_id: BTreeMap<SlaPolicyId, SlaPolicy> =
                    all.into_iter().map(|p| (p.id, p)).collect();
                let mut v = Violations::default();
                let mut seen = BTreeMap::new();
                for (i, id) in order.iter().enumerate() {
                    if let Some(first) = seen.insert(*id, i) {
                        v.add(format!("names[{i}]"), format!("repeats names[{first}]"));
                    } else if !by_id.contains_key(id) {
                        v.add(format!("names[{i}]"), format!("slaPolicies/{id} does not exist"));
                    }
                }
                let missing: Vec<String> = by_id
                    .keys()
                    .filter(|id| !seen.contains_key(id))
                    .map(|id| format!("slaPolicies/{id}"))
                    .collect();
                if !missing.is_empty() {
                    v.add(
                        "names",
                        format!("must name every policy; missing {}", missing.join(", ")),
                    );
                }
                v.check()?;
                let now = self.clock().now();
                let mut change = ChangeSet::new(tenant, now);
                let mut ordered = Vec::with_capacity(order.len());
                for (position, id) in order.iter().enumerate() {
                    let current = by_id.remove(id).expect("checked");
                    let position = position as i64;
                    if current.position == position {
                        ordered.push(current);
                        continue;
                    }
                    let mut next = current.clone();
                    next.position = position;
                    next.stamp(None, current.version + 1, current.create_time, now);
                    change.managed.push(RowWrite::Update {
                        value: ManagedRow::of(&next)?,
                        expected_version: current.version,
                    });
                    ordered.push(next);
                }
                match self.commit_as(&w, change, "slaPolicies", ordered).await? {
                    Ok(policies) => return Ok(policies),
                    Err(Clash::Failed(Error::Conflict)) => continue,
                    Err(clash) => return Err(clash.into()),
                }
            }
            Err(Error::Conflict)
        }
        .await;
        w.settle(result).await
    }
}
