//! Interaction KPIs: what a resolution fact adds for first-contact
//! resolution (`auto`: automation resolved it; `human_agents`: distinct
//! human agents who replied publicly in its cycle), and the covering index
//! that makes a tenant's facts of one metric in a period one range scan
//! read from the index alone (no row look-ups over a million facts).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ConvMetricFacts {
    Table,
    Tenant,
    ConversationId,
    Metric,
    Cycle,
    StartTime,
    StopTime,
    CalendarSeconds,
    BusinessSeconds,
    Met,
    Agent,
    Team,
    Channel,
    InboxId,
    Priority,
    InteractionType,
    Auto,
    HumanAgents,
}

const INDEX: &str = "conv_metric_facts_kpi";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ConvMetricFacts as F;
        // SQLite adds one column per ALTER.
        for col in [boolean_null(F::Auto), integer_null(F::HumanAgents)] {
            let mut col = col;
            manager
                .alter_table(
                    Table::alter()
                        .table(F::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        // Equality on tenant and metric, a range on stop time, then every
        // column a KPI query reads.
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(F::Table)
                    .col(F::Tenant)
                    .col(F::Metric)
                    .col(F::StopTime)
                    .col(F::CalendarSeconds)
                    .col(F::BusinessSeconds)
                    .col(F::Met)
                    .col(F::Cycle)
                    .col(F::Agent)
                    .col(F::Team)
                    .col(F::Channel)
                    .col(F::InboxId)
                    .col(F::Priority)
                    .col(F::InteractionType)
                    .col(F::Auto)
                    .col(F::HumanAgents)
                    .col(F::ConversationId)
                    .col(F::StartTime)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ConvMetricFacts as F;
        manager
            .drop_index(Index::drop().name(INDEX).table(F::Table).to_owned())
            .await?;
        for col in [F::HumanAgents, F::Auto] {
            manager
                .alter_table(Table::alter().table(F::Table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}
