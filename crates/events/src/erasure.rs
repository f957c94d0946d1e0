//! Erasure reaching every service that holds customer data.
//!
//! Profiles erases a customer and publishes `CustomerErased`; its receipt
//! then waits for one `rapport.type.v1.CustomerDataErased` from each
//! service holding customer data. This module is that service's side,
//! written once: a consumer of `rapport.profiles.CustomerErased` whose
//! handler runs the service's own `erase` (its tables, its rules) and, in
//! the same transaction, writes the confirmation to the service's outbox.
//! So the confirmation is published if and only if the erasure committed,
//! and a redelivered `CustomerErased` (the inbox) erases and confirms once.
//! A service only supplies `erase`.
use std::sync::Arc;

use futures::future::BoxFuture;
use prost::{Message as _, Name as _};
use rapport_proto::{profiles::CustomerErased, types::CustomerDataErased};
use rapport_store::outbox;
use sea_orm::{ConnectionTrait as _, DatabaseTransaction};

use crate::{
    ConsumerOptions, EventEnvelope,
    consume::{Handler, HandlerError, Subscription},
};

/// A service's erasure of one customer's data, through the handler's
/// transaction: `(txn, tenant, customer id)` (the id without `customers/`).
pub type Erase = Arc<
    dyn for<'t> Fn(
            &'t DatabaseTransaction,
            &'t str,
            &'t str,
        ) -> BoxFuture<'t, Result<(), HandlerError>>
        + Send
        + Sync,
>;

/// The consumer name of `service`'s erasure consumer.
pub fn consumer(service: &str) -> String {
    format!("{service}.erasure")
}

/// What `service`'s erasure consumer reads: profiles' `CustomerErased`.
pub fn subscription(service: &str) -> Subscription {
    Subscription {
        consumer: consumer(service),
        service: "profiles".to_owned(),
        filter: "rapport.profiles.CustomerErased".to_owned(),
        options: ConsumerOptions::default(),
    }
}

/// The handler: `erase`, then `service`'s confirmation in its outbox.
pub fn handler(service: &'static str, erase: Erase) -> Handler {
    Arc::new(move |txn, envelope| {
        let erase = erase.clone();
        Box::pin(async move { erase_and_confirm(service, &erase, txn, envelope).await })
    })
}

async fn erase_and_confirm(
    service: &'static str,
    erase: &Erase,
    txn: &DatabaseTransaction,
    envelope: &EventEnvelope,
) -> Result<(), HandlerError> {
    let payload = envelope
        .payload
        .as_ref()
        .filter(|p| p.type_url == CustomerErased::type_url())
        .ok_or_else(|| {
            HandlerError::Reject(format!("not a CustomerErased: {}", envelope.r#type))
        })?;
    let erased = CustomerErased::decode(payload.value.as_slice())
        .map_err(|e| HandlerError::Reject(format!("CustomerErased does not decode: {e}")))?;
    let customer = erased
        .customer
        .strip_prefix("customers/")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| HandlerError::Reject(format!("customer {:?}", erased.customer)))?;
    erase(txn, &envelope.tenant, customer).await?;
    let confirmation = Confirmation {
        customer: erased.customer.clone(),
        erasure_receipt: erased.erasure_receipt,
        service,
    };
    let trace = rapport_telemetry::propagation::current_traceparent();
    let envelopes = outbox::envelopes(
        encode,
        // Not ordered with the customer's own events of this service.
        |_: &Confirmation| None,
        &envelope.tenant,
        chrono::Utc::now(),
        &trace,
        Some(envelope),
        std::slice::from_ref(&confirmation),
    )
    .map_err(|e| HandlerError::Retry(e.to_string()))?;
    for e in &envelopes {
        txn.execute(&outbox::append_shared_insert(e, service))
            .await
            .map_err(|e| HandlerError::Retry(e.to_string()))?;
    }
    Ok(())
}

/// The confirmation, before encoding.
struct Confirmation {
    customer: String,
    erasure_receipt: String,
    service: &'static str,
}

fn encode(c: &Confirmation) -> (String, prost_types::Any) {
    let message = CustomerDataErased {
        customer: c.customer.clone(),
        erasure_receipt: c.erasure_receipt.clone(),
        service: c.service.to_owned(),
    };
    (
        c.customer.clone(),
        prost_types::Any {
            type_url: CustomerDataErased::type_url(),
            value: message.encode_to_vec(),
        },
    )
}
