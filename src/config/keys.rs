//! API keys and what each may do. Least privilege: the backend that claims holds a
//! claim key, the instances a key of their own that the API never accepts, and only
//! operators the key that does everything. Each scope takes several keys
//! (comma-separated), so a key rotates without downtime: add the new one, move the
//! callers, remove the old one.

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::{ConfigError, Env, Environment};

/// The key `./scripts/dev` and the examples use; refused in production.
pub const DEV_KEY: &str = "dev-pool-key";
/// Shortest key production accepts (32 characters: 128 bits as hex, more in base64).
pub const MIN_PRODUCTION_LEN: usize = 32;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything (`POOL_API_KEY`).
    Operator,
    /// Claim, and read claim jobs (`POOL_CLAIM_KEYS`).
    Claim,
}

/// Every key the API accepts, by scope, and the one Pool sends to instances.
#[derive(Clone)]
pub struct ApiKeys {
    operator: Vec<SecretString>,
    claim: Vec<SecretString>,
    instance: SecretString,
    /// No `POOL_INSTANCE_KEY`: instances get the first operator key (staging only).
    instance_is_operator: bool,
}

impl ApiKeys {
    pub(super) fn from_env(env: &Env<'_>, environment: Environment) -> Result<Self, ConfigError> {
        let operator = list(env, "POOL_API_KEY", environment)?;
        if operator.is_empty() {
            return Err(ConfigError::Missing("POOL_API_KEY"));
        }
        let claim = list(env, "POOL_CLAIM_KEYS", environment)?;
        let instance = match env.optional("POOL_INSTANCE_KEY") {
            Some(key) => checked("POOL_INSTANCE_KEY", key.trim(), environment)?,
            None if environment == Environment::Production => return Err(ConfigError::Missing("POOL_INSTANCE_KEY")),
            None => operator[0].clone(),
        };
        let instance_is_operator = env.optional("POOL_INSTANCE_KEY").is_none();
        let keys = Self { operator, claim, instance, instance_is_operator };
        if !instance_is_operator && keys.scope_of(keys.instance.expose_secret()).is_some() {
            let reason = "must differ from every POOL_API_KEY and POOL_CLAIM_KEYS key".to_owned();
            return Err(ConfigError::Invalid { name: "POOL_INSTANCE_KEY", reason });
        }
        Ok(keys)
    }

    /// The scope of `token`, comparing against every key in constant time.
    pub fn scope_of(&self, token: &str) -> Option<Scope> {
        let matches = |keys: &[SecretString]| {
            keys.iter().fold(0u8, |hit, key| hit | key.expose_secret().as_bytes().ct_eq(token.as_bytes()).unwrap_u8())
        };
        let (operator, claim) = (matches(&self.operator), matches(&self.claim));
        if operator == 1 {
            Some(Scope::Operator)
        } else if claim == 1 {
            Some(Scope::Claim)
        } else {
            None
        }
    }

    /// The key Pool sends to instances (`POOL_INSTANCE_KEY`).
    pub fn instance(&self) -> &SecretString {
        &self.instance
    }

    /// Whether instances hold an operator key (no `POOL_INSTANCE_KEY`, staging only).
    pub fn instance_is_operator(&self) -> bool {
        self.instance_is_operator
    }
}

/// A comma-separated list of keys; none when unset.
fn list(env: &Env<'_>, name: &'static str, environment: Environment) -> Result<Vec<SecretString>, ConfigError> {
    let Some(raw) = env.optional(name) else { return Ok(Vec::new()) };
    let raw = SecretString::from(raw);
    raw.expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| checked(name, k, environment))
        .collect()
}

/// One key, refused when it cannot travel in a header or is weak in production.
fn checked(name: &'static str, key: &str, environment: Environment) -> Result<SecretString, ConfigError> {
    let invalid = |reason: &str| Err(ConfigError::Invalid { name, reason: reason.to_owned() });
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return invalid("keys are printable ASCII without spaces");
    }
    if environment == Environment::Production {
        if key == DEV_KEY {
            return invalid("the development key is refused in production");
        }
        if key.len() < MIN_PRODUCTION_LEN {
            return invalid(&format!("production keys are at least {MIN_PRODUCTION_LEN} characters"));
        }
    }
    Ok(SecretString::from(key.to_owned()))
}
