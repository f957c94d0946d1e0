//! JWT bearer tokens (filled in by the JWT work).
use serde::{Deserialize, Serialize};

/// JWT settings; JWT is off when neither `jwks_file` nor `jwks_url` is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {}
