//! Rows ⇄ domain values: how a customer, its ledgers and its records are
//! laid out in the tables, and how database errors become domain errors.
use rapport_store::{from_micros, micros};
use sea_orm::{ActiveValue::Set, DbErr};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entities::*;
use crate::domain::{Error, model::*, rules};

/// The JSON document column.
#[derive(Serialize, Deserialize)]
struct Document {
    profile: Profile,
    consents: Vec<ConsentState>,
}

pub(super) fn db_err(e: DbErr) -> Error {
    db_error(&e)
}

pub(super) fn db_error(e: &DbErr) -> Error {
    rapport_store::to_error(e)
}

pub(super) fn corrupt(what: &str, id: &str) -> Error {
    Error::Internal(format!("stored {what} {id} is unreadable"))
}

pub(super) fn parse_uuid(s: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(s).map_err(|_| corrupt("id", s))
}

pub(super) fn to_customer(row: customers::Model) -> Result<Customer, Error> {
    let doc: Document =
        serde_json::from_str(&row.document).map_err(|_| corrupt("customer", &row.id))?;
    Ok(Customer {
        id: CustomerId(parse_uuid(&row.id)?),
        profile: doc.profile,
        consents: doc.consents,
        lifecycle_stage: LifecycleStage::from_str_opt(&row.lifecycle_stage)
            .ok_or_else(|| corrupt("stage", &row.id))?,
        state: CustomerState::from_str_opt(&row.state).ok_or_else(|| corrupt("state", &row.id))?,
        merged_into: row
            .merged_into
            .as_deref()
            .map(parse_uuid)
            .transpose()?
            .map(CustomerId),
        create_time: from_micros(row.create_time),
        update_time: from_micros(row.update_time),
        version: row.version,
    })
}

pub(crate) fn to_row(tenant: &Tenant, c: &Customer) -> Result<customers::ActiveModel, Error> {
    let doc = serde_json::to_string(&Document {
        profile: c.profile.clone(),
        consents: c.consents.clone(),
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(customers::ActiveModel {
        tenant: Set(tenant.to_string()),
        id: Set(c.id.to_string()),
        version: Set(c.version),
        state: Set(c.state.as_str().to_owned()),
        lifecycle_stage: Set(c.lifecycle_stage.as_str().to_owned()),
        display_name: Set(c.profile.display_name.clone()),
        search_text: Set(rules::search_text(&c.profile)),
        document: Set(doc),
        merged_into: Set(c.merged_into.map(|m| m.to_string())),
        create_time: Set(micros(c.create_time)),
        update_time: Set(micros(c.update_time)),
    })
}

pub(super) fn to_consent_event(r: consent_events::Model) -> Result<ConsentEvent, Error> {
    Ok(ConsentEvent {
        id: ConsentEventId(parse_uuid(&r.id)?),
        customer: CustomerId(parse_uuid(&r.customer_id)?),
        channel: Channel::from_str_opt(&r.channel)
            .ok_or_else(|| corrupt("consent channel", &r.id))?,
        purpose: ConsentPurpose::from_str_opt(&r.purpose)
            .ok_or_else(|| corrupt("consent purpose", &r.id))?,
        status: ConsentStatus::from_str_opt(&r.status)
            .ok_or_else(|| corrupt("consent status", &r.id))?,
        source: r.source,
        evidence: r.evidence,
        capture_time: from_micros(r.capture_time),
        record_time: from_micros(r.record_time),
        privacy_notice_version: r.privacy_notice_version,
    })
}

/// An erasure receipt from its row and its confirmation rows.
pub(super) fn to_receipt(
    r: erasure_receipts::Model,
    confirmations: Vec<erasure_confirmations::Model>,
) -> Result<ErasureReceipt, Error> {
    let mut confirmations: Vec<ErasureConfirmation> = confirmations
        .into_iter()
        .map(|c| ErasureConfirmation {
            service: c.service,
            confirm_time: from_micros(c.confirm_time),
        })
        .collect();
    confirmations.sort_by(|a, b| (a.confirm_time, &a.service).cmp(&(b.confirm_time, &b.service)));
    Ok(ErasureReceipt {
        id: ErasureReceiptId(parse_uuid(&r.id)?),
        customer: CustomerId(parse_uuid(&r.customer_id)?),
        erase_time: from_micros(r.erase_time),
        erased_fields: serde_json::from_str(&r.erased_fields)
            .map_err(|_| corrupt("erased fields", &r.id))?,
        confirmations,
        awaited: serde_json::from_str(&r.awaited_services)
            .map_err(|_| corrupt("awaited services", &r.id))?,
        complete_time: r.complete_time.map(from_micros),
    })
}

pub(super) fn to_lifecycle_event(r: lifecycle_events::Model) -> Result<LifecycleEvent, Error> {
    Ok(LifecycleEvent {
        id: LifecycleEventId(parse_uuid(&r.id)?),
        customer: CustomerId(parse_uuid(&r.customer_id)?),
        from_stage: LifecycleStage::from_str_opt(&r.from_stage),
        to_stage: LifecycleStage::from_str_opt(&r.to_stage)
            .ok_or_else(|| corrupt("lifecycle stage", &r.id))?,
        reason: r.reason,
        create_time: from_micros(r.create_time),
    })
}

pub(super) fn to_merge_record(r: merge_records::Model) -> Result<MergeRecord, Error> {
    Ok(MergeRecord {
        id: MergeRecordId(parse_uuid(&r.id)?),
        survivor: CustomerId(parse_uuid(&r.survivor_id)?),
        merged: CustomerId(parse_uuid(&r.merged_id)?),
        create_time: from_micros(r.create_time),
    })
}
