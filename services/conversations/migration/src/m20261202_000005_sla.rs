//! Service levels applied to conversations: the pinned SLA of each
//! conversation (`applied_sla`, JSON of the policy at its revision, NULL
//! when none applies); the alerts raised (one row per conversation, metric,
//! cycle and alert: the business key that makes each warning and breach
//! exactly once across timer workers, replicas and restarts); and the
//! metric facts KPIs are computed from (one row per stopped clock cycle,
//! with its calendar and business seconds).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Conversations {
    Table,
    AppliedSla,
}

#[derive(DeriveIden, Clone, Copy)]
enum ConvSlaAlerts {
    Table,
    Tenant,
    ConversationId,
    Metric,
    Cycle,
    Alert,
    DueTime,
    RaiseTime,
}

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
    TargetSeconds,
    Agent,
    Team,
    Channel,
    InboxId,
    Priority,
    InteractionType,
    Policy,
    Revision,
    DefinitionVersion,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Conversations::Table)
                    .add_column(text_null(Conversations::AppliedSla))
                    .to_owned(),
            )
            .await?;
        use ConvSlaAlerts as A;
        manager
            .create_table(
                Table::create()
                    .table(A::Table)
                    .if_not_exists()
                    .col(string_len(A::Tenant, 64))
                    .col(string_len(A::ConversationId, 36))
                    .col(string_len(A::Metric, 32))
                    .col(integer(A::Cycle))
                    .col(string_len(A::Alert, 16))
                    .col(big_integer(A::DueTime))
                    .col(big_integer(A::RaiseTime))
                    .primary_key(
                        Index::create()
                            .col(A::Tenant)
                            .col(A::ConversationId)
                            .col(A::Metric)
                            .col(A::Cycle)
                            .col(A::Alert),
                    )
                    .to_owned(),
            )
            .await?;
        use ConvMetricFacts as F;
        manager
            .create_table(
                Table::create()
                    .table(F::Table)
                    .if_not_exists()
                    .col(string_len(F::Tenant, 64))
                    .col(string_len(F::ConversationId, 36))
                    .col(string_len(F::Metric, 32))
                    .col(integer(F::Cycle))
                    .col(big_integer(F::StartTime))
                    .col(big_integer(F::StopTime))
                    .col(big_integer(F::CalendarSeconds))
                    .col(big_integer(F::BusinessSeconds))
                    .col(boolean_null(F::Met))
                    .col(big_integer_null(F::TargetSeconds))
                    .col(string_len(F::Agent, 36))
                    .col(string_len(F::Team, 36))
                    .col(string_len(F::Channel, 32))
                    .col(string_len(F::InboxId, 36))
                    .col(string_len(F::Priority, 16))
                    .col(string_len(F::InteractionType, 32))
                    .col(string_len(F::Policy, 36))
                    .col(big_integer(F::Revision))
                    .col(integer(F::DefinitionVersion))
                    .primary_key(
                        Index::create()
                            .col(F::Tenant)
                            .col(F::ConversationId)
                            .col(F::Metric)
                            .col(F::Cycle),
                    )
                    .to_owned(),
            )
            .await?;
        // KPIs read a period's facts: by stop time.
        manager
            .create_index(
                Index::create()
                    .name("conv_metric_facts_stop")
                    .table(F::Table)
                    .col(F::StopTime)
                    .col(F::Tenant)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConvMetricFacts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ConvSlaAlerts::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Conversations::Table)
                    .drop_column(Conversations::AppliedSla)
                    .to_owned(),
            )
            .await
    }
}
