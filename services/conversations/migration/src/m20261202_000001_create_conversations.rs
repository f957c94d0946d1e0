//! The first schema: inboxes, teams, agents and canned responses,
//! conversations, their messages, the per-tenant case number counter and
//! the thread of each (inbox, customer), plus the shared tables —
//! idempotency keys and the outbox (`rapport-store`).
//!
//! Every table is keyed by tenant first; secondary indexes lead with their
//! own column (as in profiles: a tenant-first index is a scan of the
//! tenant). Times are µs since the epoch. What no query filters on lives in
//! a JSON `document` column.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ConvInboxes {
    Table,
    Tenant,
    Id,
    Channel,
    Provider,
    Address,
}

#[derive(DeriveIden, Clone, Copy)]
enum ConvManaged {
    Table,
    Tenant,
    Id,
    Kind,
    Key,
}

#[derive(DeriveIden, Clone, Copy)]
enum Conversations {
    Table,
    Tenant,
    Id,
    Version,
    CaseNumber,
    Customer,
    InboxId,
    State,
    Priority,
    Assignee,
    Team,
    Document,
    CreateTime,
    UpdateTime,
    LastMessageTime,
    MessageCount,
}

#[derive(DeriveIden, Clone, Copy)]
enum ConvMessages {
    Table,
    Tenant,
    Id,
    ConversationId,
    InboxId,
    Customer,
    ExternalId,
    Document,
    CreateTime,
}

#[derive(DeriveIden, Clone, Copy)]
enum ConvThreads {
    Table,
    Tenant,
    InboxId,
    Customer,
    ConversationId,
}

#[derive(DeriveIden, Clone, Copy)]
enum ConvCaseNumbers {
    Table,
    Tenant,
    Last,
}

/// A table keyed by (tenant, id) with a version, a JSON document and its
/// times, plus `extra` columns.
fn resource(
    table: impl IntoIden + Copy,
    tenant: impl IntoIden,
    id: impl IntoIden + Copy,
    extra: Vec<ColumnDef>,
) -> TableCreateStatement {
    let tenant = tenant.into_iden();
    let mut t = Table::create();
    t.table(table)
        .if_not_exists()
        .col(string_len(tenant.clone(), 63))
        .col(string_len(id, 36))
        .col(big_integer(Alias::new("version")));
    for mut c in extra {
        t.col(&mut c);
    }
    t.col(text(Alias::new("document")))
        .col(big_integer(Alias::new("create_time")))
        .col(big_integer(Alias::new("update_time")))
        .primary_key(Index::create().col(tenant).col(id));
    t.to_owned()
}

async fn unique(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    cols: &[&str],
) -> Result<(), DbErr> {
    let mut i = Index::create();
    i.name(name).table(table).unique().if_not_exists();
    for c in cols {
        i.col(Alias::new(*c));
    }
    manager.create_index(i.to_owned()).await
}

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    cols: &[&str],
) -> Result<(), DbErr> {
    let mut i = Index::create();
    i.name(name).table(table).if_not_exists();
    for c in cols {
        i.col(Alias::new(*c));
    }
    manager.create_index(i.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ConvInboxes as I;
        manager
            .create_table(resource(
                I::Table,
                I::Tenant,
                I::Id,
                vec![
                    string_len(I::Channel, 32).to_owned(),
                    string_len(I::Provider, 64).to_owned(),
                    string_len(I::Address, 320).to_owned(),
                ],
            ))
            .await?;
        // One inbox per address on a channel and provider.
        unique(
            manager,
            "conv_inboxes_address",
            I::Table,
            &["address", "tenant", "channel", "provider"],
        )
        .await?;

        // Teams, agents and canned responses: one table, each unique in its
        // tenant and kind by one key (a team's name, an agent's principal, a
        // canned response's shortcode).
        use ConvManaged as R;
        manager
            .create_table(resource(
                R::Table,
                R::Tenant,
                R::Id,
                vec![
                    string_len(R::Kind, 32).to_owned(),
                    string_len(R::Key, 300).to_owned(),
                ],
            ))
            .await?;
        unique(
            manager,
            "conv_managed_key",
            R::Table,
            &["key", "kind", "tenant"],
        )
        .await?;
        index(
            manager,
            "conv_managed_kind",
            R::Table,
            &["kind", "tenant", "id"],
        )
        .await?;

        use Conversations as V;
        manager
            .create_table(
                Table::create()
                    .table(V::Table)
                    .if_not_exists()
                    .col(string_len(V::Tenant, 63))
                    .col(string_len(V::Id, 36))
                    .col(big_integer(V::Version))
                    .col(big_integer(V::CaseNumber))
                    .col(string_len(V::Customer, 36))
                    .col(string_len(V::InboxId, 36))
                    .col(string_len(V::State, 16))
                    .col(string_len(V::Priority, 16))
                    // Empty when unassigned.
                    .col(string_len(V::Assignee, 36))
                    .col(string_len(V::Team, 36))
                    .col(text(V::Document))
                    .col(big_integer(V::CreateTime))
                    .col(big_integer(V::UpdateTime))
                    .col(big_integer(V::LastMessageTime))
                    // Counted by increments, not by the document: messages
                    // added concurrently to one open conversation do not
                    // conflict.
                    .col(big_integer(V::MessageCount))
                    .primary_key(Index::create().col(V::Tenant).col(V::Id))
                    .to_owned(),
            )
            .await?;
        // The case number is the customer's handle on the case: one
        // conversation each, ever.
        unique(
            manager,
            "conversations_case_number",
            V::Table,
            &["case_number", "tenant"],
        )
        .await?;
        index(
            manager,
            "conversations_customer",
            V::Table,
            &["customer", "tenant", "id"],
        )
        .await?;

        use ConvMessages as M;
        manager
            .create_table(
                Table::create()
                    .table(M::Table)
                    .if_not_exists()
                    .col(string_len(M::Tenant, 63))
                    .col(string_len(M::Id, 36))
                    .col(string_len(M::ConversationId, 36))
                    .col(string_len(M::InboxId, 36))
                    .col(string_len(M::Customer, 36))
                    // NULL when the channel gave none (unique ignores NULLs).
                    .col(string_len_null(M::ExternalId, 500))
                    .col(text(M::Document))
                    .col(big_integer(M::CreateTime))
                    .primary_key(Index::create().col(M::Tenant).col(M::Id))
                    .to_owned(),
            )
            .await?;
        // A message received twice is stored once.
        unique(
            manager,
            "conv_messages_external_id",
            M::Table,
            &["external_id", "inbox_id", "tenant"],
        )
        .await?;
        index(
            manager,
            "conv_messages_conversation",
            M::Table,
            &["conversation_id", "tenant", "id"],
        )
        .await?;
        index(
            manager,
            "conv_messages_customer",
            M::Table,
            &["customer", "tenant", "id"],
        )
        .await?;

        // The conversation a customer's next message on an inbox threads
        // into: the key that makes concurrent first messages start one
        // conversation.
        use ConvThreads as H;
        manager
            .create_table(
                Table::create()
                    .table(H::Table)
                    .if_not_exists()
                    .col(string_len(H::Tenant, 63))
                    .col(string_len(H::InboxId, 36))
                    .col(string_len(H::Customer, 36))
                    .col(string_len(H::ConversationId, 36))
                    .primary_key(
                        Index::create()
                            .col(H::Tenant)
                            .col(H::InboxId)
                            .col(H::Customer),
                    )
                    .to_owned(),
            )
            .await?;

        // The last case number given per tenant (a sequence: a number taken
        // by a create that lost its race is skipped, never given again).
        use ConvCaseNumbers as N;
        manager
            .create_table(
                Table::create()
                    .table(N::Table)
                    .if_not_exists()
                    .col(string_len(N::Tenant, 63).primary_key())
                    .col(big_integer(N::Last))
                    .to_owned(),
            )
            .await?;

        rapport_store::schema::create_outbox(manager).await?;
        rapport_store::schema::create_idempotency_keys(manager).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "conv_case_numbers",
            "conv_threads",
            "conv_messages",
            "conversations",
            "conv_managed",
            "conv_inboxes",
        ] {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
