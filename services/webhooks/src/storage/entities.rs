//! sea-orm entities of the webhooks tables (see the migration for indexes).
#![allow(missing_docs)]

pub mod subscriptions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_subscriptions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub version: i64,
        pub url: String,
        /// JSON array of the patterns.
        pub event_types: String,
        pub state: String,
        /// Empty while active.
        pub disable_reason: String,
        pub secret: String,
        pub create_time: i64,
        pub update_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod deliveries {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub subscription_id: String,
        pub event_id: String,
        pub event_type: String,
        pub body: String,
        pub state: String,
        pub attempts: i64,
        /// 0 when the last attempt got no answer (or none was made).
        pub last_status_code: i32,
        pub last_error: String,
        pub create_time: i64,
        pub last_attempt_time: Option<i64>,
        pub next_attempt_time: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

rapport_store::tenant_keyed!(subscriptions, deliveries);
