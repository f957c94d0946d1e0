//! sea-orm entities of the conversations tables (see the migration for
//! indexes).
#![allow(missing_docs)]

pub mod inboxes {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conv_inboxes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub version: i64,
        pub channel: String,
        pub provider: String,
        pub address: String,
        /// JSON of the whole inbox.
        pub document: String,
        pub create_time: i64,
        pub update_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod conversations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conversations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub version: i64,
        pub case_number: i64,
        pub customer: String,
        pub inbox_id: String,
        pub state: String,
        pub priority: String,
        /// Empty when unassigned.
        pub assignee: String,
        /// Empty when no team.
        pub team: String,
        /// JSON of the whole conversation.
        pub document: String,
        pub create_time: i64,
        pub update_time: i64,
        pub last_message_time: i64,
        /// Authoritative (the document's copy may be older).
        pub message_count: i64,
        /// What it answers; NULL when nothing (unique per tenant when set).
        pub source: Option<String>,
        /// JSON of the pinned SLA; NULL when none applies.
        pub applied_sla: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod messages {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conv_messages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub conversation_id: String,
        pub inbox_id: String,
        pub customer: String,
        pub external_id: Option<String>,
        /// JSON of the whole message.
        pub document: String,
        pub create_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod threads {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conv_threads")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub inbox_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer: String,
        pub conversation_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod managed {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conv_managed")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub version: i64,
        /// `team`, `agent`, `canned_response`.
        pub kind: String,
        /// Unique per tenant and kind.
        pub key: String,
        /// JSON of the whole resource.
        pub document: String,
        pub create_time: i64,
        pub update_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sla_alerts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conv_sla_alerts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub conversation_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub metric: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub cycle: i32,
        /// `warning` or `breach`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub alert: String,
        pub due_time: i64,
        pub raise_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Additive KPI aggregates of the facts per UTC month
/// (`storage::metrics`; migration 000010).
pub mod metric_rollups {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conv_metric_rollups")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        /// What rows are grouped by (`GroupBy`'s stored name).
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_kind: String,
        /// `month` (the only unit so far).
        #[sea_orm(primary_key, auto_increment = false)]
        pub unit: String,
        /// The UTC month's start, µs since the epoch.
        #[sea_orm(primary_key, auto_increment = false)]
        pub unit_start: i64,
        /// The group's stored key (empty: none).
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_key: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub measure: String,
        /// `calendar`/`business` of a duration; the channel or type of
        /// volume; empty otherwise.
        #[sea_orm(primary_key, auto_increment = false)]
        pub label: String,
        /// A duration's bucket; a reopen's delay in µs; 0 otherwise.
        #[sea_orm(primary_key, auto_increment = false)]
        pub bucket: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub shard: i16,
        pub facts: i64,
        pub seconds: i64,
        pub met: i64,
        pub breached: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod metric_facts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conv_metric_facts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub conversation_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub metric: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub cycle: i32,
        pub start_time: i64,
        pub stop_time: i64,
        pub calendar_seconds: i64,
        pub business_seconds: i64,
        pub met: Option<bool>,
        pub target_seconds: Option<i64>,
        /// Empty when none (as the next columns).
        pub agent: String,
        pub team: String,
        pub channel: String,
        pub inbox_id: String,
        pub priority: String,
        pub interaction_type: String,
        pub policy: String,
        pub revision: i64,
        pub definition_version: i32,
        pub auto: Option<bool>,
        pub human_agents: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

rapport_store::tenant_keyed!(inboxes, conversations, messages, managed);
