//! JWT bearer tokens: verifies access tokens minted by an external identity
//! provider against the public keys it publishes (a JWKS) and turns them into
//! a [`Principal`].
//!
//! Only asymmetric algorithms are accepted. The gateway holds public keys and
//! never a shared secret: a secret that can check a token can also mint one,
//! and allowing HMAC next to RSA is what makes the HS/RS confusion attack
//! possible (an HS256 token "signed" with the RSA public key).
//!
//! Must not: log the token, put it in an error, or trust anything in the
//! token before its `alg` is on the allow-list and its signature checks out.
use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail, ensure};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse},
};
use rapport_kit::Tenant;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::net::TcpStream;

use super::{AuthError, Principal};

/// Key rotation re-reads the JWKS at most this often, so a flood of tokens
/// with made-up `kid`s cannot turn the gateway against the identity provider.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Connect, send and read of a JWKS URL together; a hung endpoint must not
/// hold the callers waiting on a key rotation for long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS is a few kilobytes; anything far larger is a mistake or an attack.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Bounds the work spent on a credential before its signature is checked.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock skew beyond five minutes means broken clocks, not a reason to accept
/// expired tokens.
const MAX_LEEWAY_SECS: u64 = 300;
/// Shorter RSA moduli are factorable; NIST disallows them for signatures.
const MIN_RSA_BITS: usize = 2048;
/// `sub` becomes part of `Principal.id`, which lands in audit logs and rate
/// limiter keys.
const MAX_SUBJECT_CHARS: usize = 255;

/// The refusal that makes [`JwtVerifier::verify_with_refresh`] re-read the
/// JWKS: the issuer may have rotated to a key we have not seen yet.
const UNKNOWN_KEY_ID: &str = "unknown key id";

/// JWT settings; JWT is off when neither `jwks_file` nor `jwks_url` is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// A JWKS JSON file, e.g. mounted from a ConfigMap or Secret that a job
    /// keeps in sync with the issuer. Re-read on key rotation.
    pub jwks_file: Option<PathBuf>,
    /// An `http://` URL serving the JWKS, e.g. the issuer's in-cluster
    /// service. `https://` is refused: the gateway carries no outbound TLS
    /// client, so reach an external issuer through a TLS-originating sidecar or
    /// egress proxy, or use `jwks_file`. Set one of `jwks_file` and `jwks_url`.
    pub jwks_url: Option<String>,
    /// The `iss` every token must carry. Required when JWT is on: without it
    /// any issuer whose keys share the JWKS would be trusted.
    pub issuer: String,
    /// The `aud` every token must carry (or list), so a token minted for
    /// another API of the same issuer is not accepted here.
    pub audience: String,
    /// Claim holding the tenant id the caller acts for.
    pub tenant_claim: String,
    /// Claim holding the granted scopes: a space-separated string (OAuth 2.0
    /// `scope`) or an array of strings (e.g. `scp`). Absent means no scopes.
    pub scopes_claim: String,
    /// Algorithms a token may be signed with. Asymmetric only (`RS*`, `PS*`,
    /// `ES256`, `ES384`, `EdDSA`); `HS*` is refused at start-up.
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (at most 300).
    pub leeway_secs: u64,
    /// How often the JWKS is reloaded from its source, seconds; 0: only on
    /// an unknown key id. Without it, a key the issuer withdraws (a
    /// compromised one, replaced under an existing key id or not replaced
    /// at all) stays trusted until the gateway restarts.
    pub refresh_every_secs: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            jwks_file: None,
            jwks_url: None,
            issuer: String::new(),
            audience: String::new(),
            tenant_claim: "tenant".to_owned(),
            scopes_claim: "scope".to_owned(),
            algorithms: vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()],
            leeway_secs: 30,
            refresh_every_secs: 300,
        }
    }
}

/// Verifies JWT bearer tokens against the issuer's JWKS.
///
/// [`verify`](Self::verify) is synchronous and never waits on I/O. Keys
/// rotate through [`refresh`](Self::refresh) (or
/// [`verify_with_refresh`](Self::verify_with_refresh), which calls it when a
/// token names a key id the verifier does not know).
pub struct JwtVerifier {
    rules: Rules,
    /// Where the keys came from; `None` for [`JwtVerifier::from_jwks_json`],
    /// which makes refresh a no-op.
    source: Option<JwksSource>,
    /// Swapped whole on refresh; `verify` clones the `Arc` and drops the lock
    /// at once, so a refresh never waits on in-flight verifications.
    keys: RwLock<Arc<KeySet>>,
    /// When keys were last (re)loaded or a reload last failed. Held across the
    /// reload so concurrent callers wait for it instead of fetching again.
    last_reload: tokio::sync::Mutex<Instant>,
    min_refresh_interval: Duration,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.rules.issuer)
            .field("audience", &self.rules.audience)
            .field("source", &self.source.as_ref().map(ToString::to_string))
            .field("key_ids", &self.current_keys().key_ids())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Builds the verifier from configuration, loading the JWKS from
    /// `jwks_file` or `jwks_url`. `None` when JWT is not configured (no
    /// `jwks_file` and no `jwks_url`).
    ///
    /// Fails, so that the gateway stops at boot rather than refusing every
    /// token later, when: both sources are set; the URL is not `http://`;
    /// `issuer` or `audience` is empty; an algorithm is unknown or symmetric;
    /// the JWKS cannot be loaded or has no usable key for the algorithms.
    pub async fn from_config(config: &JwtConfig) -> anyhow::Result<Option<Self>> {
        let source = match (&config.jwks_file, &config.jwks_url) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => bail!("set either `jwks_file` or `jwks_url`, not both"),
            (Some(path), None) => JwksSource::File(path.clone()),
            (None, Some(url)) => JwksSource::Url(HttpUrl::parse(url).context("`jwks_url`")?),
        };
        // Check the settings before any I/O, so a typo is reported as such
        // and not as whatever the JWKS load happens to say.
        let rules = Rules::from_config(config)?;
        let jwks_json = source.load().await?;
        Self::build(rules, &jwks_json, Some(source)).map(Some)
    }

    /// Builds the verifier from a JWKS document given as JSON. `jwks_file` and
    /// `jwks_url` in `config` are ignored and [`refresh`](Self::refresh) does
    /// nothing: the keys are the ones given here.
    pub fn from_jwks_json(config: &JwtConfig, jwks_json: &str) -> anyhow::Result<Self> {
        Self::build(Rules::from_config(config)?, jwks_json, None)
    }

    fn build(rules: Rules, jwks_json: &str, source: Option<JwksSource>) -> anyhow::Result<Self> {
        let keys =
            KeySet::parse(jwks_json, &rules.algorithms()).with_context(|| match &source {
                Some(source) => format!("JWKS from {source}"),
                None => "JWKS".to_owned(),
            })?;
        tracing::info!(key_ids = ?keys.key_ids(), issuer = %rules.issuer, "JWT verification keys loaded");
        Ok(Self {
            rules,
            source,
            keys: RwLock::new(Arc::new(keys)),
            last_reload: tokio::sync::Mutex::new(Instant::now()),
            min_refresh_interval: MIN_REFRESH_INTERVAL,
        })
    }

    /// Verifies `token` and returns who it speaks for.
    ///
    /// Checks, in order: shape; `alg` on the allow-list (which refuses `none`
    /// and every `HS*`); a signature is present; the key named by `kid` (a
    /// token without `kid` only when the JWKS holds exactly one key) and that
    /// key's type and own `alg` fit the token's `alg`; the signature; `exp`
    /// (required), `nbf` (when present), `iss`, `aud` and `sub` (required),
    /// with the configured leeway; then the tenant and scopes claims.
    ///
    /// The error names the failed check and never carries the token.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = UnverifiedHeader::peek(token)?;
        let (alg, validation) = self
            .rules
            .validation_for(&header.alg)
            .ok_or(AuthError::InvalidToken("algorithm"))?;
        if header.signature_is_empty {
            return Err(AuthError::InvalidToken("signature"));
        }
        let keys = self.current_keys();
        let key = keys.select(header.kid.as_deref(), alg)?;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
            .map_err(refusal)?
            .claims;
        self.rules.principal(&claims)
    }

    /// [`verify`](Self::verify), and when the token names a key id the
    /// verifier does not know, [`refresh`](Self::refresh) and verify once
    /// more: the issuer may have started signing with a new key.
    ///
    /// Waits on I/O only in that case, at most once per 30 s and for at most
    /// a few seconds; callers that must never wait can call `verify` and
    /// trigger `refresh` from a background task instead.
    pub async fn verify_with_refresh(&self, token: &str) -> Result<Principal, AuthError> {
        match self.verify(token) {
            Err(AuthError::InvalidToken(UNKNOWN_KEY_ID)) if self.source.is_some() => {
                self.refresh().await;
                self.verify(token)
            }
            outcome => outcome,
        }
    }

    /// Re-reads the JWKS file or re-fetches the JWKS URL and swaps the keys
    /// in, for key rotation. Does nothing if the last load (or attempt) was
    /// less than 30 s ago, or for a verifier built by
    /// [`from_jwks_json`](Self::from_jwks_json).
    ///
    /// A failed load, or a JWKS without a usable key, is logged and keeps the
    /// current keys: an issuer serving garbage for a moment must not lock
    /// every caller out. Besides on unknown key ids, calling this every few
    /// minutes drops keys the issuer has withdrawn.
    pub async fn refresh(&self) {
        match self.reload().await {
            Ok(true) => tracing::info!(
                key_ids = ?self.current_keys().key_ids(),
                "JWT verification keys reloaded"
            ),
            Ok(false) => {}
            Err(why) => tracing::warn!(
                error = format!("{why:#}"),
                "JWKS reload failed; keeping the current keys"
            ),
        }
    }

    /// Reloads the JWKS every `every` (the first time after `every`), until
    /// the returned task is aborted.
    pub fn spawn_refresher(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.refresh().await;
            }
        })
    }

    /// Whether new keys were swapped in.
    async fn reload(&self) -> anyhow::Result<bool> {
        let Some(source) = &self.source else {
            return Ok(false);
        };
        let mut last_reload = self.last_reload.lock().await;
        if last_reload.elapsed() < self.min_refresh_interval {
            return Ok(false);
        }
        // A failure counts too, so a broken endpoint is not hammered.
        *last_reload = Instant::now();
        let jwks_json = source.load().await?;
        let keys = KeySet::parse(&jwks_json, &self.rules.algorithms())
            .with_context(|| format!("JWKS from {source}"))?;
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        Ok(true)
    }

    fn current_keys(&self) -> Arc<KeySet> {
        // The writer only swaps an `Arc`, so a poisoned lock still holds a
        // complete key set.
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The checks every token must pass, derived once from [`JwtConfig`].
struct Rules {
    issuer: String,
    audience: String,
    tenant_claim: String,
    scopes_claim: String,
    /// One `Validation` per allowed algorithm, each allowing only that
    /// algorithm, so the key chosen for the token's `alg` is used for nothing else.
    validations: Vec<(Algorithm, Validation)>,
}

impl Rules {
    fn from_config(config: &JwtConfig) -> anyhow::Result<Self> {
        let issuer = config.issuer.trim();
        let audience = config.audience.trim();
        ensure!(
            !issuer.is_empty(),
            "`issuer` must be set when JWT is enabled: it is the `iss` every token must carry"
        );
        ensure!(
            !audience.is_empty(),
            "`audience` must be set when JWT is enabled: it is the `aud` every token must carry"
        );
        ensure!(
            !config.tenant_claim.is_empty(),
            "`tenant_claim` must not be empty"
        );
        ensure!(
            !config.scopes_claim.is_empty(),
            "`scopes_claim` must not be empty"
        );
        ensure!(
            config.leeway_secs <= MAX_LEEWAY_SECS,
            "`leeway_secs` is {}, at most {MAX_LEEWAY_SECS} is allowed",
            config.leeway_secs
        );
        ensure!(
            !config.algorithms.is_empty(),
            "`algorithms` must list at least one algorithm"
        );

        let mut validations: Vec<(Algorithm, Validation)> = Vec::new();
        for name in &config.algorithms {
            let alg = Algorithm::from_str(name).map_err(|_| {
                anyhow!(
                    "`algorithms`: unknown algorithm {name:?}; expected RS256, RS384, RS512, \
                     PS256, PS384, PS512, ES256, ES384 or EdDSA"
                )
            })?;
            ensure!(
                !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512),
                "`algorithms`: {name} is symmetric and not accepted: whoever can verify an HMAC \
                 token can mint one, and allowing it next to RSA opens the HS/RS confusion attack; \
                 use RS*, PS*, ES* or EdDSA"
            );
            if validations.iter().any(|(known, _)| *known == alg) {
                continue;
            }
            let mut validation = Validation::new(alg);
            validation.leeway = config.leeway_secs;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.set_issuer(&[issuer]);
            validation.set_audience(&[audience]);
            validations.push((alg, validation));
        }

        Ok(Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            tenant_claim: config.tenant_claim.clone(),
            scopes_claim: config.scopes_claim.clone(),
            validations,
        })
    }

    fn algorithms(&self) -> Vec<Algorithm> {
        self.validations.iter().map(|(alg, _)| *alg).collect()
    }

    /// The validation for the token's `alg`, if that algorithm is allowed.
    fn validation_for(&self, alg: &str) -> Option<(Algorithm, &Validation)> {
        // `Algorithm::from_str` knows no `none`, so it is refused here too.
        let alg = Algorithm::from_str(alg).ok()?;
        self.validations
            .iter()
            .find(|(allowed, _)| *allowed == alg)
            .map(|(alg, validation)| (*alg, validation))
    }

    /// The principal of verified claims.
    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| {
                !sub.is_empty()
                    && sub.chars().count() <= MAX_SUBJECT_CHARS
                    && !sub.chars().any(char::is_control)
            })
            .ok_or(AuthError::InvalidToken("subject"))?;
        let tenant = match claims.get(&self.tenant_claim) {
            Some(Value::String(tenant)) => {
                Tenant::parse(tenant).map_err(|_| AuthError::InvalidToken("tenant id"))?
            }
            _ => return Err(AuthError::InvalidToken("tenant claim")),
        };
        let scopes = match claims.get(&self.scopes_claim) {
            None | Some(Value::Null) => BTreeSet::new(),
            Some(Value::String(scopes)) => {
                scopes.split_ascii_whitespace().map(str::to_owned).collect()
            }
            Some(Value::Array(scopes)) => scopes
                .iter()
                .map(|scope| scope.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or(AuthError::InvalidToken("scopes claim"))?,
            Some(_) => return Err(AuthError::InvalidToken("scopes claim")),
        };
        Ok(Principal {
            tenant: tenant.as_str().to_owned(),
            id: format!("jwt:{subject}"),
            scopes,
            rate_limit_per_second: None,
        })
    }
}

/// The parts of the JOSE header needed to pick the key, read before the
/// signature is checked and trusted for nothing else.
struct UnverifiedHeader {
    alg: String,
    kid: Option<String>,
    signature_is_empty: bool,
}

impl UnverifiedHeader {
    fn peek(token: &str) -> Result<Self, AuthError> {
        #[derive(Deserialize)]
        struct Raw {
            alg: String,
            kid: Option<String>,
            crit: Option<Value>,
        }
        const FORMAT: AuthError = AuthError::InvalidToken("format");

        if token.len() > MAX_TOKEN_BYTES {
            return Err(FORMAT);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(FORMAT);
        };
        let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| FORMAT)?;
        let header: Raw = serde_json::from_slice(&header).map_err(|_| FORMAT)?;
        // RFC 7515 §4.1.11: extensions listed in `crit` must be understood or
        // the token rejected; this verifier understands none (e.g. `b64`).
        if header.crit.is_some() {
            return Err(AuthError::InvalidToken("critical header"));
        }
        Ok(Self {
            alg: header.alg,
            kid: header.kid,
            signature_is_empty: signature.is_empty(),
        })
    }
}

/// Maps a `jsonwebtoken` failure to the check that failed.
fn refusal(error: jsonwebtoken::errors::Error) -> AuthError {
    let check = match error.kind() {
        ErrorKind::ExpiredSignature => return AuthError::Expired,
        ErrorKind::InvalidSignature => "signature",
        ErrorKind::ImmatureSignature => "not yet valid",
        ErrorKind::InvalidIssuer => "issuer",
        ErrorKind::InvalidAudience => "audience",
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            match claim.as_str() {
                "exp" => "expiry",
                "nbf" => "not before",
                "iss" => "issuer",
                "aud" => "audience",
                "sub" => "subject",
                _ => "claims",
            }
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => "algorithm",
        ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => "key",
        _ => "format",
    };
    AuthError::InvalidToken(check)
}

/// The usable verification keys of a JWKS.
struct KeySet {
    keys: Vec<VerificationKey>,
}

struct VerificationKey {
    kid: Option<String>,
    /// The allowed algorithms this key may verify: those its type supports,
    /// narrowed to its own `alg` when the JWK declares one.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl KeySet {
    /// Keeps the keys usable for `allowed` and skips the rest (encryption
    /// keys, symmetric keys, other algorithms), which issuers routinely
    /// publish alongside their signing keys. Fails when none is usable.
    fn parse(jwks_json: &str, allowed: &[Algorithm]) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<Value>,
        }
        let raw: Raw = serde_json::from_str(jwks_json)
            .context("not a JWKS: expected a JSON object with a `keys` array")?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (index, jwk) in raw.keys.into_iter().enumerate() {
            let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
            match VerificationKey::from_jwk(jwk, allowed) {
                Ok(key) => keys.push(key),
                Err(why) => {
                    let which = kid.map_or_else(|| format!("#{index}"), |kid| format!("{kid:?}"));
                    tracing::debug!(key = %which, reason = %why, "JWKS key skipped");
                    skipped.push(format!("{which}: {why}"));
                }
            }
        }
        ensure!(
            !keys.is_empty(),
            "no usable signing key for {allowed:?} (skipped: {})",
            if skipped.is_empty() {
                "none, `keys` is empty".to_owned()
            } else {
                skipped.join("; ")
            }
        );
        Ok(Self { keys })
    }

    /// The key to verify a token with, by its `kid`.
    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerificationKey, AuthError> {
        let fits = |key: &&VerificationKey| key.algorithms.contains(&alg);
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|key| key.kid.as_deref() == Some(kid));
                let first = named
                    .next()
                    .ok_or(AuthError::InvalidToken(UNKNOWN_KEY_ID))?;
                // A kid may name several keys (one per algorithm, RFC 7517 §4.5).
                std::iter::once(first)
                    .chain(named)
                    .find(fits)
                    .ok_or(AuthError::InvalidToken("algorithm"))
            }
            // Without a kid the choice would be a guess, unless there is none.
            None => match self.keys.as_slice() {
                [only] => Some(only)
                    .filter(fits)
                    .ok_or(AuthError::InvalidToken("algorithm")),
                _ => Err(AuthError::InvalidToken("missing key id")),
            },
        }
    }

    fn key_ids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|key| key.kid.as_deref().unwrap_or("(none)"))
            .collect()
    }
}

impl VerificationKey {
    fn from_jwk(jwk: Value, allowed: &[Algorithm]) -> anyhow::Result<Self> {
        let jwk: Jwk = serde_json::from_value(jwk).context("not a JWK")?;
        if let Some(key_use) = &jwk.common.public_key_use {
            ensure!(
                *key_use == PublicKeyUse::Signature,
                "not a signing key (`use`)"
            );
        }
        if let Some(operations) = &jwk.common.key_operations {
            ensure!(
                operations.contains(&KeyOperations::Verify),
                "not a verification key (`key_ops`)"
            );
        }
        let by_type: &[Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let modulus = URL_SAFE_NO_PAD
                    .decode(&rsa.n)
                    .context("RSA `n` is not base64url")?;
                let bits = significant_bits(&modulus);
                ensure!(
                    bits >= MIN_RSA_BITS,
                    "RSA key of {bits} bits, {MIN_RSA_BITS} needed"
                );
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ]
            }
            AlgorithmParameters::EllipticCurve(ec) => {
                let (alg, size) = match ec.curve {
                    EllipticCurve::P256 => (&[Algorithm::ES256], 32),
                    EllipticCurve::P384 => (&[Algorithm::ES384], 48),
                    ref curve => bail!("unsupported EC curve {curve:?}"),
                };
                ensure!(
                    coordinate_len(&ec.x)? == size && coordinate_len(&ec.y)? == size,
                    "EC coordinates do not fit the curve"
                );
                alg
            }
            AlgorithmParameters::OctetKeyPair(okp) => {
                ensure!(okp.curve == EllipticCurve::Ed25519, "unsupported OKP curve");
                ensure!(coordinate_len(&okp.x)? == 32, "Ed25519 key is not 32 bytes");
                &[Algorithm::EdDSA]
            }
            AlgorithmParameters::OctetKey(_) => {
                bail!("symmetric (`oct`) keys are never used for verification")
            }
            _ => bail!("unsupported key type"),
        };
        let declared = match jwk.common.key_algorithm {
            None => None,
            Some(declared) => Some(
                Algorithm::try_from(declared)
                    .ok()
                    .filter(|alg| by_type.contains(alg))
                    .with_context(|| format!("`alg` {declared} does not fit the key type"))?,
            ),
        };
        let algorithms: Vec<Algorithm> = by_type
            .iter()
            .copied()
            .filter(|alg| declared.is_none_or(|declared| declared == *alg))
            .filter(|alg| allowed.contains(alg))
            .collect();
        ensure!(!algorithms.is_empty(), "fits no allowed algorithm");
        let key = DecodingKey::from_jwk(&jwk).context("unreadable key material")?;
        Ok(Self {
            kid: jwk.common.key_id,
            algorithms,
            key,
        })
    }
}

fn significant_bits(big_endian: &[u8]) -> usize {
    match big_endian.iter().position(|byte| *byte != 0) {
        None => 0,
        Some(first) => (big_endian.len() - first) * 8 - big_endian[first].leading_zeros() as usize,
    }
}

fn coordinate_len(base64url: &str) -> anyhow::Result<usize> {
    Ok(URL_SAFE_NO_PAD
        .decode(base64url)
        .context("key coordinate is not base64url")?
        .len())
}

/// Where the JWKS is loaded from.
enum JwksSource {
    File(PathBuf),
    Url(HttpUrl),
}

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksSource::File(path) => write!(f, "file {}", path.display()),
            JwksSource::Url(url) => write!(f, "{}", url.raw),
        }
    }
}

impl JwksSource {
    async fn load(&self) -> anyhow::Result<String> {
        let loaded = match self {
            JwksSource::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_jwks_file(&path))
                    .await
                    .context("reading the JWKS file panicked")?
            }
            JwksSource::Url(url) => tokio::time::timeout(FETCH_TIMEOUT, url.get())
                .await
                .unwrap_or_else(|_| bail!("no complete answer within {FETCH_TIMEOUT:?}")),
        };
        loaded.with_context(|| format!("loading the JWKS from {self}"))
    }
}

fn read_jwks_file(path: &Path) -> anyhow::Result<String> {
    let size = std::fs::metadata(path)?.len();
    ensure!(
        size <= MAX_JWKS_BYTES as u64,
        "{size} bytes, more than {MAX_JWKS_BYTES}"
    );
    Ok(std::fs::read_to_string(path)?)
}

/// An `http://` URL, checked once at start-up.
///
/// A deliberately small HTTP/1.1 client: one GET, `Connection: close`,
/// `Content-Length`, chunked or close-delimited bodies, 200 only, no
/// redirects, no TLS. It exists so that fetching a JWKS inside the cluster
/// does not pull an HTTP client stack into the gateway.
struct HttpUrl {
    raw: String,
    /// Host to connect to, without IPv6 brackets.
    host: String,
    port: u16,
    /// `host[:port]`, for the `Host` header.
    authority: String,
    path_and_query: String,
}

impl HttpUrl {
    fn parse(raw: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = raw
            .parse()
            .with_context(|| format!("{raw:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => bail!(
                "{raw:?}: https is not supported, the gateway has no outbound TLS client. \
                 Mount the JWKS as a file (`jwks_file`, from a ConfigMap or Secret kept in sync), \
                 or reach the issuer over http through a TLS-originating sidecar or egress proxy"
            ),
            _ => bail!("{raw:?} must be an http:// URL"),
        }
        let authority = uri.authority().context("no host")?;
        // Credentials in the URL would be a secret sitting in the config file.
        ensure!(
            !authority.as_str().contains('@'),
            "user info in the URL is not supported"
        );
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        ensure!(!host.is_empty(), "no host");
        Ok(Self {
            raw: raw.to_owned(),
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            path_and_query: uri
                .path_and_query()
                .map(|p| p.as_str())
                .filter(|p| !p.is_empty())
                .unwrap_or("/")
                .to_owned(),
        })
    }

    async fn get(&self) -> anyhow::Result<String> {
        let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\
             User-Agent: rapport-gateway\r\nConnection: close\r\n\r\n",
            self.path_and_query, self.authority
        );
        write_all(&stream, request.as_bytes()).await?;
        let mut response = Vec::with_capacity(8 * 1024);
        loop {
            let read = read_some(&stream, &mut response).await?;
            ensure!(
                response.len() <= MAX_JWKS_BYTES + 64 * 1024,
                "response larger than {MAX_JWKS_BYTES} bytes"
            );
            if let Some(body) = http_response_body(&response, read == 0)? {
                return String::from_utf8(body).context("JWKS is not UTF-8");
            }
            ensure!(read != 0, "connection closed before the response ended");
        }
    }
}

// Readiness-based I/O needs only tokio's `net` feature, which the gateway
// declares; `AsyncReadExt` would need `io-util`.
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => bytes = &bytes[written..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends what is available to `buf`; 0 means the peer closed.
async fn read_some(stream: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0; 8 * 1024];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(read) => {
                buf.extend_from_slice(&chunk[..read]);
                return Ok(read);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// The body of a `200` response once `response` holds all of it, `None` while
/// more is to come. `closed`: the peer closed the connection.
fn http_response_body(response: &[u8], closed: bool) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(head_end) = find(response, b"\r\n\r\n") else {
        ensure!(!closed, "connection closed inside the response headers");
        return Ok(None);
    };
    let head = std::str::from_utf8(&response[..head_end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut status = status_line.splitn(3, ' ');
    ensure!(
        status
            .next()
            .is_some_and(|version| version.starts_with("HTTP/1.")),
        "not an HTTP/1.x response"
    );
    ensure!(status.next() == Some("200"), "answered {status_line:?}");
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').context("malformed header line")?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .split(',')
                .any(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let body = &response[head_end + 4..];
    if chunked {
        return dechunk(body, closed);
    }
    match content_length {
        Some(length) if body.len() >= length => Ok(Some(body[..length].to_vec())),
        Some(_) => {
            ensure!(!closed, "connection closed inside the body");
            Ok(None)
        }
        None => Ok(closed.then(|| body.to_vec())),
    }
}

/// Decodes a chunked body (RFC 9112 §7.1); `None` until the last chunk.
fn dechunk(mut rest: &[u8], closed: bool) -> anyhow::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    while let Some(line_end) = find(rest, b"\r\n") {
        let size_line = std::str::from_utf8(&rest[..line_end]).context("bad chunk size")?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).context("bad chunk size")?;
        if size == 0 {
            // Trailers, if any, are of no interest.
            return Ok(Some(body));
        }
        ensure!(
            size <= MAX_JWKS_BYTES,
            "chunk larger than {MAX_JWKS_BYTES} bytes"
        );
        let data = line_end + 2;
        if rest.len() < data + size + 2 {
            break;
        }
        ensure!(
            &rest[data + size..data + size + 2] == b"\r\n",
            "chunk not followed by CRLF"
        );
        body.extend_from_slice(&rest[data..data + size]);
        rest = &rest[data + size + 2..];
    }
    ensure!(!closed, "connection closed before the last chunk");
    Ok(None)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;

    const JWKS: &str = include_str!("../../tests/data/jwt/jwks.json");
    const RSA_PRIVATE: &str = include_str!("../../tests/data/jwt/rsa-private.pem");
    const RSA_PUBLIC: &str = include_str!("../../tests/data/jwt/rsa-public.pem");
    const EC_PRIVATE: &str = include_str!("../../tests/data/jwt/ec-p256-private.pem");
    const ED_PRIVATE: &str = include_str!("../../tests/data/jwt/ed25519-private.pem");
    const ISSUER: &str = "https://idp.example";
    const AUDIENCE: &str = "rapport";

    fn config() -> JwtConfig {
        JwtConfig {
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            ..JwtConfig::default()
        }
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::from_jwks_json(&config(), JWKS).unwrap()
    }

    /// The JWKS with only the keys whose kid is listed.
    fn jwks_with(kids: &[&str]) -> String {
        let mut jwks: Value = serde_json::from_str(JWKS).unwrap();
        jwks["keys"]
            .as_array_mut()
            .unwrap()
            .retain(|key| kids.contains(&key["kid"].as_str().unwrap()));
        jwks.to_string()
    }

    /// `jsonwebtoken` is built without `use_pem`: strip the armour, keep the DER.
    fn der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body).unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "tenant": "acme",
            "scope": "customers.read conversations.write",
            "iat": now(),
            "exp": now() + 300,
        })
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn without(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let key = match alg.family() {
            jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_der(&der(RSA_PRIVATE)),
            jsonwebtoken::AlgorithmFamily::Ec => EncodingKey::from_ec_der(&der(EC_PRIVATE)),
            jsonwebtoken::AlgorithmFamily::Ed => EncodingKey::from_ed_der(&der(ED_PRIVATE)),
            jsonwebtoken::AlgorithmFamily::Hmac => panic!("tests sign HMAC by hand"),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &key).unwrap()
    }

    fn rs256(claims: &Value) -> String {
        sign(Algorithm::RS256, Some("rsa-1"), claims)
    }

    fn b64(json: &Value) -> String {
        URL_SAFE_NO_PAD.encode(json.to_string())
    }

    fn refused(verifier: &JwtVerifier, token: &str) -> AuthError {
        verifier.verify(token).expect_err("token accepted")
    }

    fn scopes(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rs256_token_with_scope_string_gives_principal() {
        let principal = verifier().verify(&rs256(&claims())).unwrap();
        assert_eq!(
            principal,
            Principal {
                tenant: "acme".to_owned(),
                id: "jwt:user-1".to_owned(),
                scopes: scopes(&["customers.read", "conversations.write"]),
                rate_limit_per_second: None,
            }
        );
    }

    #[test]
    fn es256_token_with_scope_array_gives_principal() {
        let claims = with(claims(), "scope", json!(["customers.read", "admin"]));
        let principal = verifier()
            .verify(&sign(Algorithm::ES256, Some("ec-1"), &claims))
            .unwrap();
        assert_eq!(principal.tenant, "acme");
        assert_eq!(principal.scopes, scopes(&["customers.read", "admin"]));
    }

    #[test]
    fn eddsa_token_with_custom_claim_names_gives_principal() {
        let config = JwtConfig {
            tenant_claim: "https://rapport.dev/tenant".to_owned(),
            scopes_claim: "scp".to_owned(),
            ..config()
        };
        let verifier = JwtVerifier::from_jwks_json(&config, JWKS).unwrap();
        let claims = without(without(claims(), "tenant"), "scope");
        let claims = with(claims, "https://rapport.dev/tenant", json!("globex"));
        let claims = with(claims, "scp", json!(["profiles.read"]));
        let principal = verifier
            .verify(&sign(Algorithm::EdDSA, Some("ed-1"), &claims))
            .unwrap();
        assert_eq!(principal.tenant, "globex");
        assert_eq!(principal.scopes, scopes(&["profiles.read"]));
    }

    #[test]
    fn token_without_scopes_claim_has_no_scopes() {
        let principal = verifier()
            .verify(&rs256(&without(claims(), "scope")))
            .unwrap();
        assert!(principal.scopes.is_empty());
    }

    #[test]
    fn alg_none_is_refused() {
        let header = json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"});
        let token = format!("{}.{}.", b64(&header), b64(&claims()));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("algorithm")
        );
    }

    #[test]
    fn hs256_signed_with_the_rsa_public_key_is_refused() {
        // The classic confusion: a verifier that lets the token's alg pick
        // HMAC would check this with the public key, which everyone has.
        for secret in [RSA_PUBLIC.as_bytes().to_vec(), der(RSA_PUBLIC)] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("rsa-1".to_owned());
            let token = encode(&header, &claims(), &EncodingKey::from_secret(&secret)).unwrap();
            assert_eq!(
                refused(&verifier(), &token),
                AuthError::InvalidToken("algorithm")
            );
        }
    }

    #[test]
    fn algorithm_outside_the_allow_list_is_refused() {
        let config = JwtConfig {
            algorithms: vec!["ES256".to_owned()],
            ..config()
        };
        let verifier = JwtVerifier::from_jwks_json(&config, JWKS).unwrap();
        assert_eq!(
            refused(&verifier, &rs256(&claims())),
            AuthError::InvalidToken("algorithm")
        );
        assert!(
            verifier
                .verify(&sign(Algorithm::ES256, Some("ec-1"), &claims()))
                .is_ok()
        );
    }

    #[test]
    fn key_must_fit_the_token_alg() {
        let config = JwtConfig {
            algorithms: vec!["RS256".to_owned(), "PS256".to_owned(), "ES256".to_owned()],
            ..config()
        };
        let verifier = JwtVerifier::from_jwks_json(&config, JWKS).unwrap();
        // rsa-1 declares `alg: RS256`, so PS256 with the same key is refused.
        let ps256 = sign(Algorithm::PS256, Some("rsa-1"), &claims());
        assert_eq!(
            refused(&verifier, &ps256),
            AuthError::InvalidToken("algorithm")
        );
        // An ES256 token naming the RSA key.
        let es256 = sign(Algorithm::ES256, Some("rsa-1"), &claims());
        assert_eq!(
            refused(&verifier, &es256),
            AuthError::InvalidToken("algorithm")
        );
    }

    #[test]
    fn wrong_audience_is_refused() {
        let token = rs256(&with(claims(), "aud", json!("another-api")));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("audience")
        );
        let token = rs256(&without(claims(), "aud"));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("audience")
        );
    }

    #[test]
    fn audience_list_containing_ours_is_accepted() {
        let token = rs256(&with(claims(), "aud", json!(["another-api", AUDIENCE])));
        assert!(verifier().verify(&token).is_ok());
    }

    #[test]
    fn wrong_issuer_is_refused() {
        let token = rs256(&with(claims(), "iss", json!("https://evil.example")));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("issuer")
        );
        let token = rs256(&without(claims(), "iss"));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("issuer")
        );
    }

    #[test]
    fn expired_token_is_refused_beyond_the_leeway() {
        let token = rs256(&with(claims(), "exp", json!(now() - 120)));
        assert_eq!(refused(&verifier(), &token), AuthError::Expired);
        // Within the 30 s leeway: clocks drift.
        let token = rs256(&with(claims(), "exp", json!(now() - 10)));
        assert!(verifier().verify(&token).is_ok());
    }

    #[test]
    fn token_without_exp_is_refused() {
        let token = rs256(&without(claims(), "exp"));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("expiry")
        );
    }

    #[test]
    fn token_not_yet_valid_is_refused() {
        let token = rs256(&with(claims(), "nbf", json!(now() + 600)));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("not yet valid")
        );
        let token = rs256(&with(claims(), "nbf", json!(now() + 10)));
        assert!(verifier().verify(&token).is_ok());
    }

    #[test]
    fn unknown_kid_is_refused() {
        let token = sign(Algorithm::RS256, Some("rsa-2"), &claims());
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("unknown key id")
        );
    }

    #[test]
    fn token_without_kid_needs_a_single_key_jwks() {
        let token = sign(Algorithm::RS256, None, &claims());
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("missing key id")
        );
        let single = JwtVerifier::from_jwks_json(&config(), &jwks_with(&["rsa-1"])).unwrap();
        assert!(single.verify(&token).is_ok());
    }

    #[test]
    fn stripped_signature_is_refused() {
        let token = rs256(&claims());
        let (signed, _signature) = token.rsplit_once('.').unwrap();
        let stripped = format!("{signed}.");
        assert_eq!(
            refused(&verifier(), &stripped),
            AuthError::InvalidToken("signature")
        );
        assert_eq!(
            refused(&verifier(), signed),
            AuthError::InvalidToken("format")
        );
    }

    #[test]
    fn tampered_payload_is_refused() {
        let token = rs256(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(&with(claims(), "tenant", json!("globex")));
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(
            refused(&verifier(), &tampered),
            AuthError::InvalidToken("signature")
        );
    }

    #[test]
    fn tenant_claim_must_be_a_valid_tenant_id() {
        let token = rs256(&without(claims(), "tenant"));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("tenant claim")
        );
        let token = rs256(&with(claims(), "tenant", json!(42)));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("tenant claim")
        );
        let token = rs256(&with(claims(), "tenant", json!("Acme Corp")));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("tenant id")
        );
    }

    #[test]
    fn subject_is_required() {
        let token = rs256(&without(claims(), "sub"));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("subject")
        );
        let token = rs256(&with(claims(), "sub", json!("user\n1")));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("subject")
        );
    }

    #[test]
    fn scopes_claim_of_another_type_is_refused() {
        let token = rs256(&with(claims(), "scope", json!(["a", 1])));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("scopes claim")
        );
    }

    #[test]
    fn critical_header_extensions_are_refused() {
        let header = json!({"alg": "RS256", "kid": "rsa-1", "b64": false, "crit": ["b64"]});
        let token = format!("{}.{}.c2ln", b64(&header), b64(&claims()));
        assert_eq!(
            refused(&verifier(), &token),
            AuthError::InvalidToken("critical header")
        );
    }

    #[test]
    fn errors_never_contain_the_token() {
        let verifier = verifier();
        let valid = rs256(&claims());
        let none_header = b64(&json!({"alg": "none", "kid": "rsa-1"}));
        let tokens = [
            format!("{none_header}.{}.", b64(&claims())),
            rs256(&with(claims(), "aud", json!("another-api"))),
            rs256(&with(claims(), "exp", json!(now() - 120))),
            rs256(&with(claims(), "tenant", json!("Acme Corp"))),
            sign(Algorithm::RS256, Some("rsa-2"), &claims()),
            format!("{}.", valid.rsplit_once('.').unwrap().0),
            format!("{valid}x"),
            "not-a-jwt".to_owned(),
        ];
        for token in &tokens {
            let error = format!("{:?}", refused(&verifier, token));
            for part in token.split('.').filter(|part| part.len() > 8) {
                assert!(!error.contains(part), "{error} leaks the token");
            }
        }
    }

    #[test]
    fn config_rejects_symmetric_and_unknown_algorithms() {
        for algorithm in ["HS256", "HS512", "none", "RS1"] {
            let config = JwtConfig {
                algorithms: vec!["RS256".to_owned(), algorithm.to_owned()],
                ..config()
            };
            let error = JwtVerifier::from_jwks_json(&config, JWKS).unwrap_err();
            assert!(error.to_string().contains(algorithm), "{error}");
        }
    }

    #[test]
    fn config_needs_issuer_audience_and_sane_leeway() {
        for config in [
            JwtConfig {
                issuer: " ".to_owned(),
                ..config()
            },
            JwtConfig {
                audience: String::new(),
                ..config()
            },
            JwtConfig {
                algorithms: vec![],
                ..config()
            },
            JwtConfig {
                leeway_secs: 3600,
                ..config()
            },
        ] {
            assert!(
                JwtVerifier::from_jwks_json(&config, JWKS).is_err(),
                "{config:?}"
            );
        }
    }

    #[test]
    fn jwks_without_a_usable_key_is_rejected() {
        let symmetric =
            json!({"keys": [{"kty": "oct", "kid": "h", "alg": "HS256", "k": "c2VjcmV0"}]});
        let error = JwtVerifier::from_jwks_json(&config(), &symmetric.to_string()).unwrap_err();
        assert!(format!("{error:#}").contains("symmetric"), "{error:#}");

        let mut encryption: Value = serde_json::from_str(&jwks_with(&["rsa-1"])).unwrap();
        encryption["keys"][0]["use"] = json!("enc");
        let error = JwtVerifier::from_jwks_json(&config(), &encryption.to_string()).unwrap_err();
        assert!(
            format!("{error:#}").contains("not a signing key"),
            "{error:#}"
        );

        assert!(JwtVerifier::from_jwks_json(&config(), r#"{"keys": []}"#).is_err());
        assert!(JwtVerifier::from_jwks_json(&config(), "[]").is_err());
    }

    #[test]
    fn unusable_keys_are_skipped_next_to_usable_ones() {
        let mut jwks: Value = serde_json::from_str(JWKS).unwrap();
        let keys = jwks["keys"].as_array_mut().unwrap();
        keys.push(json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}));
        keys.push(json!({"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"}));
        let verifier = JwtVerifier::from_jwks_json(&config(), &jwks.to_string()).unwrap();
        assert_eq!(verifier.current_keys().key_ids(), ["rsa-1", "ec-1", "ed-1"]);
    }

    #[tokio::test]
    async fn from_config_is_none_without_jwks_and_checks_sources() {
        assert!(JwtVerifier::from_config(&config()).await.unwrap().is_none());

        let https = JwtConfig {
            jwks_url: Some("https://idp.example/.well-known/jwks.json".to_owned()),
            ..config()
        };
        let error = JwtVerifier::from_config(&https).await.unwrap_err();
        assert!(
            format!("{error:#}").contains("https is not supported"),
            "{error:#}"
        );

        let both = JwtConfig {
            jwks_url: Some("http://idp/jwks".to_owned()),
            jwks_file: Some("jwks.json".into()),
            ..config()
        };
        assert!(JwtVerifier::from_config(&both).await.is_err());
    }

    #[tokio::test]
    async fn jwks_file_is_loaded() {
        let config = JwtConfig {
            jwks_file: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jwt/jwks.json")),
            ..config()
        };
        let verifier = JwtVerifier::from_config(&config).await.unwrap().unwrap();
        assert!(verifier.verify(&rs256(&claims())).is_ok());
    }

    /// Serves one response per body, in order, on 127.0.0.1; `chunked`
    /// switches from Content-Length to chunked framing.
    async fn serve_jwks(bodies: Vec<(String, bool)>) -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let server = tokio::spawn(async move {
            for (body, chunked) in bodies {
                let (stream, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                while find(&request, b"\r\n\r\n").is_none() {
                    assert_ne!(read_some(&stream, &mut request).await.unwrap(), 0);
                }
                assert!(request.starts_with(b"GET /.well-known/jwks.json HTTP/1.1\r\n"));
                let response = if chunked {
                    let (a, b) = body.split_at(body.len() / 2);
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                         {:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n",
                        a.len(),
                        b.len()
                    )
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                write_all(&stream, response.as_bytes()).await.unwrap();
            }
        });
        (url, server)
    }

    #[tokio::test]
    async fn jwks_url_is_fetched() {
        let (url, server) = serve_jwks(vec![(JWKS.to_owned(), false)]).await;
        let config = JwtConfig {
            jwks_url: Some(url),
            ..config()
        };
        let verifier = JwtVerifier::from_config(&config).await.unwrap().unwrap();
        server.await.unwrap();
        let principal = verifier
            .verify(&sign(Algorithm::EdDSA, Some("ed-1"), &claims()))
            .unwrap();
        assert_eq!(principal.tenant, "acme");
    }

    #[tokio::test]
    async fn unknown_kid_triggers_a_rate_limited_refresh() {
        // The issuer starts with the RSA key, then rotates the EC key in.
        let bodies = vec![
            (jwks_with(&["rsa-1"]), false),
            (jwks_with(&["rsa-1", "ec-1"]), true),
        ];
        let (url, server) = serve_jwks(bodies).await;
        let config = JwtConfig {
            jwks_url: Some(url),
            ..config()
        };
        let mut verifier = JwtVerifier::from_config(&config).await.unwrap().unwrap();
        let rotated = sign(Algorithm::ES256, Some("ec-1"), &claims());

        // Within 30 s of the last load, a refresh does not touch the network.
        assert_eq!(
            verifier.verify_with_refresh(&rotated).await,
            Err(AuthError::InvalidToken("unknown key id"))
        );

        verifier.min_refresh_interval = Duration::ZERO;
        assert!(verifier.verify_with_refresh(&rotated).await.is_ok());
        server.await.unwrap();
        assert!(verifier.verify(&rotated).is_ok());
    }

    #[tokio::test]
    async fn periodic_refresh_drops_a_withdrawn_key() {
        let (url, server) = serve_jwks(vec![
            (JWKS.to_owned(), false),
            (jwks_with(&["ec-1"]), false),
        ])
        .await;
        let config = JwtConfig {
            jwks_url: Some(url),
            ..config()
        };
        let mut verifier = JwtVerifier::from_config(&config).await.unwrap().unwrap();
        assert!(verifier.verify(&rs256(&claims())).is_ok());
        verifier.min_refresh_interval = Duration::ZERO;
        let verifier = Arc::new(verifier);
        // The issuer withdraws rsa-1; no token names an unknown key id.
        let refresher = verifier.clone().spawn_refresher(Duration::from_millis(20));
        server.await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while verifier.verify(&rs256(&claims())).is_ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        refresher.abort();
        assert_eq!(
            verifier.verify(&rs256(&claims())),
            Err(AuthError::InvalidToken("unknown key id"))
        );
    }

    #[tokio::test]
    async fn failed_refresh_keeps_the_keys() {
        let (url, server) = serve_jwks(vec![(JWKS.to_owned(), false)]).await;
        let config = JwtConfig {
            jwks_url: Some(url),
            ..config()
        };
        let mut verifier = JwtVerifier::from_config(&config).await.unwrap().unwrap();
        server.await.unwrap();
        // The listener is gone: the reload fails to connect.
        verifier.min_refresh_interval = Duration::ZERO;
        assert!(verifier.reload().await.is_err());
        assert!(verifier.verify(&rs256(&claims())).is_ok());
    }

    #[test]
    fn http_response_framing() {
        let ok = |raw: &str, closed| http_response_body(raw.as_bytes(), closed).unwrap();
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", false),
            Some(b"{}".to_vec())
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}", false),
            None
        );
        assert_eq!(ok("HTTP/1.0 200 OK\r\n\r\n{}", false), None);
        assert_eq!(ok("HTTP/1.0 200 OK\r\n\r\n{}", true), Some(b"{}".to_vec()));
        let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n";
        assert_eq!(ok(chunked, false), None);
        assert_eq!(
            ok(&format!("{chunked}0\r\n\r\n"), false),
            Some(b"{}".to_vec())
        );

        let err = |raw: &str, closed| http_response_body(raw.as_bytes(), closed).unwrap_err();
        assert!(
            err("HTTP/1.1 404 Not Found\r\n\r\n", false)
                .to_string()
                .contains("404")
        );
        err("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}", true);
        err(chunked, true);
        err("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", true);
    }

    #[test]
    fn http_url_parsing() {
        let url = HttpUrl::parse("http://[::1]:8080/jwks?x=1").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 8080));
        assert_eq!(url.authority, "[::1]:8080");
        assert_eq!(url.path_and_query, "/jwks?x=1");
        let url = HttpUrl::parse("http://idp.auth.svc").unwrap();
        assert_eq!((url.port, url.path_and_query.as_str()), (80, "/"));
        assert!(HttpUrl::parse("http://user:pw@idp/jwks").is_err());
        assert!(HttpUrl::parse("ftp://idp/jwks").is_err());
        assert!(HttpUrl::parse("idp/jwks").is_err());
    }
}
