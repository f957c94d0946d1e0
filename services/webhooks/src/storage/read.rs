//! The repository's reads. Every query names the tenant.
use rapport_store::{Page, tenant_page};
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
        let select = subscriptions::Entity::find();
        let page = Page::after(after, limit);
        tenant_page(tenant, select, page, &self.db.reader, to_subscription).await
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
        let select = deliveries::Entity::find()
            .filter(deliveries::Column::SubscriptionId.eq(subscription.to_string()));
        let page = Page::before(before, limit);
        tenant_page(tenant, select, page, &self.db.reader, to_delivery).await
    }

    async fn commit(&self, change: ChangeSet) -> Result<(), CommitError> {
        self.write(change).await
    }
}
