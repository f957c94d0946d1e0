//! The repository's reads. Every query names the tenant.
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{SqlRepository, entities::*, rows::*};
use crate::domain::{
    Error,
    model::*,
    repository::{ChangeSet, CommitError, Repository},
};

impl Repository for SqlRepository {
    async fn get(
        &self,
        tenant: &Tenant,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, Error> {
        rapport_store::by_key(
            subscriptions::Entity::find_by_id((tenant.to_string(), id.to_string())),
            &self.db.reader,
        )
        .await
        .map_err(db_err)?
        .map(to_subscription)
        .transpose()
    }

    async fn list(
        &self,
        tenant: &Tenant,
        after: Option<SubscriptionId>,
        limit: u32,
    ) -> Result<Vec<Subscription>, Error> {
        use subscriptions::Column as C;
        let mut q = subscriptions::Entity::find().filter(C::Tenant.eq(tenant.as_str()));
        if let Some(after) = after {
            q = q.filter(C::Id.gt(after.to_string()));
        }
        q.order_by_asc(C::Id)
            .limit(u64::from(limit))
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_subscription)
            .collect()
    }

    async fn delivery(&self, tenant: &Tenant, id: DeliveryId) -> Result<Option<Delivery>, Error> {
        rapport_store::by_key(
            deliveries::Entity::find_by_id((tenant.to_string(), id.to_string())),
            &self.db.reader,
        )
        .await
        .map_err(db_err)?
        .map(to_delivery)
        .transpose()
    }

    async fn deliveries(
        &self,
        tenant: &Tenant,
        subscription: SubscriptionId,
        before: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, Error> {
        use deliveries::Column as C;
        let mut q = deliveries::Entity::find()
            .filter(C::SubscriptionId.eq(subscription.to_string()))
            .filter(C::Tenant.eq(tenant.as_str()));
        if let Some(before) = before {
            q = q.filter(C::Id.lt(before.to_string()));
        }
        q.order_by_desc(C::Id)
            .limit(u64::from(limit))
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_delivery)
            .collect()
    }

    async fn commit(&self, change: ChangeSet) -> Result<(), CommitError> {
        self.write(change).await
    }
}
