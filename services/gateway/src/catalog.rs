//! What the gateway knows about every RPC, read from the file descriptor set
//! of `rapport-proto`: its path, the scope it requires and its REST route.
//! Nothing here is written per RPC, so a new service or RPC needs no gateway
//! code.
use std::{collections::BTreeMap, sync::Arc};

use anyhow::Context as _;
use prost_reflect::{DescriptorPool, MethodDescriptor, Value};

/// The REST route of an RPC (the shape of google.api.HttpRule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    /// HTTP verb.
    pub verb: http::Method,
    /// Path template, e.g. `/v1/{name=customers/*}`.
    pub template: String,
    /// Request field carried in the body, `*` for the whole request, empty for none.
    pub body: String,
}

/// One RPC.
#[derive(Debug, Clone)]
pub struct MethodInfo {
    /// gRPC path, `/rapport.profiles.v1.ProfilesService/GetCustomer`.
    pub path: String,
    /// Fully qualified service name.
    pub service: String,
    /// Method name.
    pub name: String,
    /// Scope the caller needs; `None` means the RPC is refused (fail closed).
    pub scope: Option<String>,
    /// REST route, when declared.
    pub http: Option<HttpRule>,
    /// The contract marks the RPC as a read that is audited
    /// (`option (rapport.api.v1.audit_read) = true`): exports of personal data.
    pub audit_read: bool,
    /// Full descriptor (input and output message types).
    pub descriptor: MethodDescriptor,
}

impl MethodInfo {
    /// Whether the outcome of a call goes into the audit log: every call
    /// that changes state, and the reads the contract marks.
    pub fn is_audited(&self) -> bool {
        self.audit_read || self.is_mutating()
    }

    /// Whether the RPC changes state (audited): anything not declared
    /// `option idempotency_level = NO_SIDE_EFFECTS` (protobuf's own marker)
    /// and not routed as GET.
    pub fn is_mutating(&self) -> bool {
        let declared = self
            .descriptor
            .method_descriptor_proto()
            .options
            .as_ref()
            .map(|o| o.idempotency_level());
        if declared == Some(prost_types::method_options::IdempotencyLevel::NoSideEffects) {
            return false;
        }
        match &self.http {
            Some(rule) => rule.verb != http::Method::GET,
            None => true,
        }
    }
}

/// Every RPC of the contracts, by gRPC path.
#[derive(Debug, Clone)]
pub struct Catalog {
    pool: DescriptorPool,
    methods: BTreeMap<String, Arc<MethodInfo>>,
}

const SCOPE_OPTION: &str = "rapport.api.v1.required_scope";
const HTTP_OPTION: &str = "rapport.api.v1.http";
const AUDIT_READ_OPTION: &str = "rapport.api.v1.audit_read";

impl Catalog {
    /// Reads an encoded `FileDescriptorSet`.
    pub fn load(file_descriptor_set: &[u8]) -> anyhow::Result<Self> {
        let pool =
            DescriptorPool::decode(file_descriptor_set).context("decoding the descriptor set")?;
        let scope_ext = pool.get_extension_by_name(SCOPE_OPTION);
        let http_ext = pool.get_extension_by_name(HTTP_OPTION);
        let audit_ext = pool.get_extension_by_name(AUDIT_READ_OPTION);
        let mut methods = BTreeMap::new();
        for service in pool.services() {
            for method in service.methods() {
                let options = method.options();
                let scope = scope_ext.as_ref().and_then(|ext| {
                    if !options.has_extension(ext) {
                        return None;
                    }
                    match options.get_extension(ext).as_ref() {
                        Value::String(s) if !s.is_empty() => Some(s.clone()),
                        _ => None,
                    }
                });
                let http = http_ext.as_ref().and_then(|ext| {
                    if !options.has_extension(ext) {
                        return None;
                    }
                    let Value::Message(rule) = options.get_extension(ext).into_owned() else {
                        return None;
                    };
                    let field = |name: &str| match rule.get_field_by_name(name).as_deref() {
                        Some(Value::String(s)) => s.clone(),
                        _ => String::new(),
                    };
                    let verbs = [
                        ("get", http::Method::GET),
                        ("post", http::Method::POST),
                        ("patch", http::Method::PATCH),
                        ("put", http::Method::PUT),
                        ("delete", http::Method::DELETE),
                    ];
                    verbs.into_iter().find_map(|(name, verb)| {
                        let template = field(name);
                        (!template.is_empty()).then(|| HttpRule {
                            verb,
                            template,
                            body: field("body"),
                        })
                    })
                });
                let audit_read = audit_ext.as_ref().is_some_and(|ext| {
                    options.has_extension(ext)
                        && matches!(options.get_extension(ext).as_ref(), Value::Bool(true))
                });
                let path = format!("/{}/{}", service.full_name(), method.name());
                methods.insert(
                    path.clone(),
                    Arc::new(MethodInfo {
                        path,
                        service: service.full_name().to_owned(),
                        name: method.name().to_owned(),
                        scope,
                        http,
                        audit_read,
                        descriptor: method,
                    }),
                );
            }
        }
        Ok(Self { pool, methods })
    }

    /// The RPC at a gRPC path.
    pub fn method(&self, path: &str) -> Option<&Arc<MethodInfo>> {
        self.methods.get(path)
    }

    /// Every RPC, ordered by path.
    pub fn methods(&self) -> impl Iterator<Item = &Arc<MethodInfo>> {
        self.methods.values()
    }

    /// The descriptor pool (message types for JSON transcoding).
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rapport_rpc_declares_a_scope() {
        let catalog = Catalog::load(rapport_proto::FILE_DESCRIPTOR_SET).unwrap();
        let rapport: Vec<_> = catalog
            .methods()
            .filter(|m| m.service.starts_with("rapport."))
            .collect();
        assert!(
            rapport.len() >= 17,
            "profiles and gateway admin RPCs are in the catalog"
        );
        for m in rapport {
            assert!(
                m.scope.is_some(),
                "{} declares no scope: the gateway would refuse it",
                m.path
            );
            assert!(m.http.is_some(), "{} declares no REST route", m.path);
        }
    }

    #[test]
    fn options_are_read_from_descriptors() {
        let catalog = Catalog::load(rapport_proto::FILE_DESCRIPTOR_SET).unwrap();
        let get = catalog
            .method("/rapport.profiles.v1.ProfilesService/GetCustomer")
            .unwrap();
        assert_eq!(get.scope.as_deref(), Some("profiles.read"));
        let rule = get.http.as_ref().unwrap();
        assert_eq!(
            (rule.verb.clone(), rule.template.as_str()),
            (http::Method::GET, "/v1/{name=customers/*}")
        );
        assert!(!get.is_mutating());
        let echo = catalog
            .method("/rapport.bench.v1.EchoService/Echo")
            .unwrap();
        assert_eq!(echo.http.as_ref().unwrap().verb, http::Method::POST);
        assert!(
            !echo.is_mutating(),
            "idempotency_level = NO_SIDE_EFFECTS outranks the POST route"
        );
        let create = catalog
            .method("/rapport.profiles.v1.ProfilesService/CreateCustomer")
            .unwrap();
        assert_eq!(create.http.as_ref().unwrap().body, "customer");
        assert!(create.is_mutating());
        let export = catalog
            .method("/rapport.profiles.v1.ProfilesService/ExportCustomerData")
            .unwrap();
        assert!(!export.is_mutating());
        assert!(export.is_audited(), "exports are marked audit_read");
        assert!(!get.is_audited());
    }
}
