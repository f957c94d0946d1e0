//! Generated protobuf messages and gRPC stubs for every Rapport contract in `proto/`.
//! The module tree mirrors the protobuf packages. This crate holds no logic.
#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs)]

/// Every RPC of the contracts with the scope it declares, generated from
/// `proto/` (`rapport.api.v1.required_scope`).
pub mod methods {
    /// One RPC.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Method {
        /// gRPC path, `/rapport.profiles.v1.ProfilesService/GetCustomer`.
        pub path: &'static str,
        /// Full name of the request message (unique per RPC, buf STANDARD).
        pub request: &'static str,
        /// The scope a caller needs; empty when the contract declares none.
        pub scope: &'static str,
    }

    include!(concat!(env!("OUT_DIR"), "/rapport_methods.rs"));

    /// The RPC at `path`.
    pub fn by_path(path: &str) -> Option<&'static Method> {
        METHODS.iter().find(|m| m.path == path)
    }

    /// The RPC whose request message is `request` (its full name).
    pub fn by_request(request: &str) -> Option<&'static Method> {
        METHODS.iter().find(|m| m.request == request)
    }
}

/// `rapport.*` packages.
pub mod rapport {
    /// `rapport.type.*`: value types shared by several services.
    pub mod r#type {
        /// `rapport.type.v1`.
        pub mod v1 {
            tonic::include_proto!("rapport.r#type.v1");
        }
    }
    /// `rapport.api.*`: method options every contract uses (scopes, HTTP routes).
    pub mod api {
        /// `rapport.api.v1`.
        pub mod v1 {
            tonic::include_proto!("rapport.api.v1");
        }
    }
    /// `rapport.bench.*`: the echo service `rapport bench` measures ceilings with.
    pub mod bench {
        /// `rapport.bench.v1`.
        pub mod v1 {
            tonic::include_proto!("rapport.bench.v1");
        }
    }
    /// `rapport.conversations.*`: conversations on every channel.
    pub mod conversations {
        /// `rapport.conversations.v1`.
        pub mod v1 {
            tonic::include_proto!("rapport.conversations.v1");
        }
    }
    /// `rapport.gateway.*`: the gateway's admin API.
    pub mod gateway {
        /// `rapport.gateway.v1`.
        pub mod v1 {
            tonic::include_proto!("rapport.gateway.v1");
        }
    }
    /// `rapport.profiles.*`: customer profiles.
    pub mod profiles {
        /// `rapport.profiles.v1`.
        pub mod v1 {
            tonic::include_proto!("rapport.profiles.v1");
        }
    }
    /// `rapport.webhooks.*`: partner webhooks.
    pub mod webhooks {
        /// `rapport.webhooks.v1`.
        pub mod v1 {
            tonic::include_proto!("rapport.webhooks.v1");
        }
    }
}

pub use rapport::bench::v1 as bench;
pub use rapport::conversations::v1 as conversations;
pub use rapport::gateway::v1 as gateway;
pub use rapport::profiles::v1 as profiles;
pub use rapport::r#type::v1 as types;
pub use rapport::webhooks::v1 as webhooks;

/// Encoded `FileDescriptorSet` of every Rapport proto, for gRPC reflection and
/// descriptor-driven tooling.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rapport_descriptor");

#[cfg(test)]
mod tests {
    use prost::Message as _;

    #[test]
    fn descriptor_set_names_every_service() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let services: Vec<String> = fds
            .file
            .iter()
            .flat_map(|f| {
                let pkg = f.package().to_owned();
                f.service.iter().map(move |s| format!("{pkg}.{}", s.name()))
            })
            .collect();
        assert!(services.contains(&"rapport.profiles.v1.ProfilesService".to_owned()));
    }
}
