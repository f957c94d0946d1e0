//! The repository's reads. Every query names the tenant.
use rapport_store::Seek;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

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
        rapport_store::keyset_page(
            subscriptions::Entity::find().filter(C::Tenant.eq(tenant.as_str())),
            C::Id,
            Seek::After(after.map(|a| a.to_string())),
            limit,
            &self.db.reader,
        )
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
        rapport_store::keyset_page(
            deliveries::Entity::find()
                .filter(C::SubscriptionId.eq(subscription.to_string()))
                .filter(C::Tenant.eq(tenant.as_str())),
            C::Id,
            Seek::Before(before.map(|b| b.to_string())),
            limit,
            &self.db.reader,
        )
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
