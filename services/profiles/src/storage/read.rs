//! The repository's reads — customers by key, identity holders, lists,
//! search, the ledgers — and its one write, `commit` (in `write.rs`).
//! Every query names the tenant.
use std::collections::HashMap;

use rapport_store::micros;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait as _, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Alias, Expr, ExprTrait as _, LikeExpr, Query},
};

use super::{SqlRepository, entities::*, rows::*};
use crate::domain::{Error, model::*, repository::*, rules::IdentityKind};

/// Most rows a search fetches by rowid from the trigram index; a needle
/// found in more is common enough that walking the tenant in id order fills
/// a page sooner.
const SEARCH_CANDIDATES: u64 = 2_000;

impl SqlRepository {
    /// On SQLite, the rowids of `tenant`'s customers whose text has the
    /// needle's trigrams (a superset of the matches: the index knows no
    /// ESCAPE), when there are at most [`SEARCH_CANDIDATES`]; `None` when the
    /// index cannot narrow the search (PostgreSQL, needles without three
    /// literal characters in a row, common needles).
    ///
    /// The trigram index holds every tenant; joining back to `customers` on
    /// the tenant makes the cap count this tenant's rows only, so a needle
    /// common in another tenant no longer sends this tenant's searches to the
    /// slower walk, and no other tenant's row ids leave this function.
    pub(super) async fn search_candidates(
        &self,
        tenant: &Tenant,
        needle: &str,
    ) -> Result<Option<Vec<i64>>, Error> {
        if self.db.backend() != sea_orm::DatabaseBackend::Sqlite || !indexable(needle) {
            return Ok(None);
        }
        let rows = self
            .db
            .reader
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Sqlite,
                "SELECT s.rowid FROM customers_search s \
                 JOIN customers c ON c.rowid = s.rowid \
                 WHERE s.search_text LIKE ? AND c.tenant = ? LIMIT ?",
                [
                    format!("%{needle}%").into(),
                    tenant.to_string().into(),
                    i64::try_from(SEARCH_CANDIDATES + 1)
                        .unwrap_or(i64::MAX)
                        .into(),
                ],
            ))
            .await
            .map_err(db_err)?;
        if rows.len() as u64 > SEARCH_CANDIDATES {
            return Ok(None);
        }
        rows.iter()
            .map(|r| r.try_get_by_index::<i64>(0).map_err(db_err))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// Whether the trigram index can narrow a search for `needle`: only with a
/// run of at least three characters that are not LIKE wildcards. `ab_` or
/// `%%%` are three characters long but hold no trigram, and FTS5 then scans
/// the whole index (every tenant's rows) to evaluate the LIKE.
fn indexable(needle: &str) -> bool {
    let mut run = 0;
    for c in needle.chars() {
        run = if matches!(c, '%' | '_') { 0 } else { run + 1 };
        if run >= 3 {
            return true;
        }
    }
    false
}

impl Repository for SqlRepository {
    async fn get(&self, tenant: &Tenant, id: CustomerId) -> Result<Option<Customer>, Error> {
        rapport_store::by_key(
            customers::Entity::find_by_id((tenant.to_string(), id.to_string())),
            &self.db.reader,
        )
        .await
        .map_err(db_err)?
        .map(to_customer)
        .transpose()
    }

    async fn holders(
        &self,
        tenant: &Tenant,
        keys: &[(IdentityKind, String)],
    ) -> Result<Vec<(usize, CustomerId)>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Every OR term names the whole primary key (tenant, kind, value).
        // With the tenant factored out, PostgreSQL's generic plan for this
        // prepared statement used the key for the tenant only and read every
        // identity of the tenant (seen in pg_stat_user_tables during a bench).
        let mut any = Condition::any();
        for (kind, value) in keys {
            any = any.add(
                Condition::all()
                    .add(identities::Column::Tenant.eq(tenant.as_str()))
                    .add(identities::Column::Kind.eq(kind.as_str()))
                    .add(identities::Column::Value.eq(value.as_str())),
            );
        }
        let rows = identities::Entity::find()
            .filter(any)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?;
        let index: HashMap<(&str, &str), usize> = keys
            .iter()
            .enumerate()
            .map(|(i, (k, v))| ((k.as_str(), v.as_str()), i))
            .collect();
        let mut out = Vec::new();
        for r in &rows {
            if let Some(i) = index.get(&(r.kind.as_str(), r.value.as_str())) {
                out.push((*i, CustomerId(parse_uuid(&r.customer_id)?)));
            }
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    async fn list(
        &self,
        tenant: &Tenant,
        filter: &ListFilter,
        order: ListOrder,
        after: Option<&ListCursor>,
        limit: u32,
    ) -> Result<Vec<Customer>, Error> {
        use customers::Column as C;
        let mut q = customers::Entity::find()
            .filter(C::Tenant.eq(tenant.as_str()))
            .filter(C::State.eq(filter.state.as_str()));
        if let Some(stage) = filter.stage {
            q = q.filter(C::LifecycleStage.eq(stage.as_str()));
        }
        if let Some(tag) = &filter.tag {
            q = q.filter(
                C::Id.in_subquery(
                    Query::select()
                        .column(tags::Column::CustomerId)
                        .from(tags::Entity)
                        .and_where(tags::Column::Tenant.eq(tenant.as_str()))
                        .and_where(tags::Column::Tag.eq(tag.as_str()))
                        .to_owned(),
                ),
            );
        }
        if let Some(t) = filter.update_time_after {
            q = q.filter(C::UpdateTime.gt(micros(t)));
        }
        let col = match order.key {
            SortKey::CreateTime => C::CreateTime,
            SortKey::UpdateTime => C::UpdateTime,
            SortKey::DisplayName => C::DisplayName,
        };
        if let Some(cursor) = after {
            let value: sea_orm::Value = match order.key {
                SortKey::DisplayName => cursor.text.clone().unwrap_or_default().into(),
                _ => cursor.time.unwrap_or_default().into(),
            };
            let id = cursor.id.to_string();
            let keyset = if order.descending {
                Condition::any()
                    .add(col.lt(value.clone()))
                    .add(Condition::all().add(col.eq(value)).add(C::Id.lt(id)))
            } else {
                Condition::any()
                    .add(col.gt(value.clone()))
                    .add(Condition::all().add(col.eq(value)).add(C::Id.gt(id)))
            };
            q = q.filter(keyset);
        }
        q = if order.descending {
            q.order_by_desc(col).order_by_desc(C::Id)
        } else {
            q.order_by_asc(col).order_by_asc(C::Id)
        };
        q.limit(u64::from(limit))
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_customer)
            .collect()
    }

    async fn exact_matches(
        &self,
        tenant: &Tenant,
        match_keys: &[String],
    ) -> Result<Vec<Customer>, Error> {
        let ids: Vec<String> = identities::Entity::find()
            .filter(identities::Column::Tenant.eq(tenant.as_str()))
            .filter(identities::Column::MatchKey.is_in(match_keys.iter().cloned()))
            .limit(100)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|r| r.customer_id)
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        customers::Entity::find()
            .filter(customers::Column::Tenant.eq(tenant.as_str()))
            .filter(customers::Column::Id.is_in(ids))
            .filter(customers::Column::State.eq(CustomerState::Active.as_str()))
            .order_by_asc(customers::Column::Id)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_customer)
            .collect()
    }

    async fn text_matches(
        &self,
        tenant: &Tenant,
        needle: &str,
        exclude: &[CustomerId],
        after: Option<CustomerId>,
        limit: u32,
    ) -> Result<Vec<Customer>, Error> {
        let escaped: String = needle
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let candidates = self.search_candidates(tenant, needle).await?;
        let mut q = customers::Entity::find();
        q = match candidates {
            // Few rows hold the needle's trigrams: fetch those by rowid. The
            // tenant is tested with a unary `+` so that SQLite cannot pick the
            // primary key's (tenant, id) order instead and scan the tenant.
            Some(rowids) => q
                .filter(Expr::cust_with_values(
                    "+\"customers\".\"tenant\" = ?",
                    [tenant.to_string()],
                ))
                .filter(Expr::col((customers::Entity, Alias::new("rowid"))).is_in(rowids)),
            // Common needle, or PostgreSQL (whose planner has the statistics
            // to choose between its trigram index and the key order): walk
            // the tenant in id order; the first page fills quickly.
            None => q.filter(customers::Column::Tenant.eq(tenant.as_str())),
        };
        q = q
            .filter(customers::Column::State.eq(CustomerState::Active.as_str()))
            .filter(
                customers::Column::SearchText
                    .like(LikeExpr::new(format!("%{escaped}%")).escape('\\')),
            );
        if !exclude.is_empty() {
            q = q.filter(customers::Column::Id.is_not_in(exclude.iter().map(|c| c.to_string())));
        }
        rapport_store::keyset_page(
            q,
            customers::Column::Id,
            rapport_store::Seek::After(after.map(|a| a.to_string())),
            limit,
            &self.db.reader,
        )
        .await
        .map_err(db_err)?
        .into_iter()
        .map(to_customer)
        .collect()
    }

    async fn consent_events(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        after: Option<LedgerCursor>,
        limit: u32,
    ) -> Result<Vec<ConsentEvent>, Error> {
        use consent_events::Column as C;
        let columns = Ledger {
            tenant: C::Tenant,
            customer: C::CustomerId,
            time: C::CaptureTime,
            id: C::Id,
        };
        ledger_page::<consent_events::Entity>(
            &self.db.reader,
            columns,
            tenant,
            customer,
            after,
            limit,
        )
        .await?
        .into_iter()
        .map(to_consent_event)
        .collect()
    }

    async fn lifecycle_events(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        after: Option<LedgerCursor>,
        limit: u32,
    ) -> Result<Vec<LifecycleEvent>, Error> {
        use lifecycle_events::Column as C;
        let columns = Ledger {
            tenant: C::Tenant,
            customer: C::CustomerId,
            time: C::CreateTime,
            id: C::Id,
        };
        ledger_page::<lifecycle_events::Entity>(
            &self.db.reader,
            columns,
            tenant,
            customer,
            after,
            limit,
        )
        .await?
        .into_iter()
        .map(to_lifecycle_event)
        .collect()
    }

    async fn merge_records(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
    ) -> Result<Vec<MergeRecord>, Error> {
        let id = customer.to_string();
        merge_records::Entity::find()
            .filter(merge_records::Column::Tenant.eq(tenant.as_str()))
            .filter(
                Condition::any()
                    .add(merge_records::Column::SurvivorId.eq(&id))
                    .add(merge_records::Column::MergedId.eq(&id)),
            )
            .order_by_asc(merge_records::Column::Id)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_merge_record)
            .collect()
    }

    async fn erasure_receipt(
        &self,
        tenant: &Tenant,
        id: ErasureReceiptId,
    ) -> Result<Option<ErasureReceipt>, Error> {
        super::cycle::load_receipt(&self.db.reader, tenant, id)
            .await
            .map_err(db_err)
    }

    async fn commit(&self, change: ChangeSet) -> Result<(), CommitError> {
        self.write(change).await
    }
}

/// The columns a per-customer ledger (consent decisions, lifecycle history)
/// is read by.
struct Ledger<C> {
    tenant: C,
    customer: C,
    /// The ledger's order: oldest first, ties by id.
    time: C,
    id: C,
}

/// One page of a customer's ledger after the `(time, id)` cursor, oldest
/// first.
async fn ledger_page<E: EntityTrait>(
    reader: &DatabaseConnection,
    columns: Ledger<E::Column>,
    tenant: &Tenant,
    customer: CustomerId,
    after: Option<LedgerCursor>,
    limit: u32,
) -> Result<Vec<E::Model>, Error> {
    let Ledger {
        tenant: tenant_col,
        customer: customer_col,
        time,
        id,
    } = columns;
    let mut q = E::find()
        .filter(tenant_col.eq(tenant.as_str()))
        .filter(customer_col.eq(customer.to_string()));
    if let Some((t, after_id)) = after {
        q = q.filter(
            Condition::any().add(time.gt(t)).add(
                Condition::all()
                    .add(time.eq(t))
                    .add(id.gt(after_id.to_string())),
            ),
        );
    }
    q.order_by_asc(time)
        .order_by_asc(id)
        .limit(u64::from(limit))
        .all(reader)
        .await
        .map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_needles_with_three_literal_characters_use_the_index() {
        for needle in ["ada", "xada", "a%ada", "ada_"] {
            assert!(indexable(needle), "{needle:?}");
        }
        for needle in ["", "ab", "ab_", "%%%", "a_b_c", "a%b%c%d", "__ab%cd_"] {
            assert!(!indexable(needle), "{needle:?}");
        }
    }

    #[tokio::test]
    async fn search_candidates_are_the_tenants_own() {
        let testdb = rapport_testkit::TestDb::fresh().await.unwrap();
        if testdb.backend_name() != "sqlite" {
            return;
        }
        let db = rapport_store::open::<crate::Migrator>(&rapport_testkit::database_config(&testdb))
            .await
            .unwrap();
        // Storage never sees the api's encoder (CI checks): events are not
        // what this test is about, so any encoding will do.
        fn encode(_: &crate::domain::model::DomainEvent) -> (String, prost_types::Any) {
            ("rapport.profiles.Test".into(), prost_types::Any::default())
        }
        let repo = SqlRepository::new(db.clone(), encode, rapport_events::relay::Wake::default());
        let profiles =
            crate::domain::service::Profiles::new(repo.clone(), crate::domain::SystemClock);
        let (acme, globex) = (
            Tenant::parse("acme").unwrap(),
            Tenant::parse("globex").unwrap(),
        );
        for (tenant, name) in [
            (&acme, "Zelda Acme"),
            (&globex, "Zelda Globex"),
            (&globex, "Zelda Two"),
        ] {
            profiles
                .create(
                    tenant,
                    Profile {
                        display_name: name.into(),
                        ..Profile::default()
                    },
                    None,
                )
                .await
                .unwrap();
        }
        let candidates = repo
            .search_candidates(&acme, "zelda")
            .await
            .unwrap()
            .expect("a rare needle uses the index");
        assert_eq!(candidates.len(), 1, "another tenant's rows: {candidates:?}");
        assert_eq!(repo.search_candidates(&acme, "ze_").await.unwrap(), None);
        db.close().await;
    }
}
