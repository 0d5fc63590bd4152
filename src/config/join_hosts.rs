//! `POOL_JOIN_HOSTS`: the hosts a claim's `joinUrl` may point at. A join link makes
//! an instance fetch the URL, so anything else (an IP literal, a private name such
//! as `*.railway.internal`) is refused.

use super::{ConfigError, Env, Environment};

/// Hosts a `joinUrl` may point at: exact names, or `*.suffix` for any subdomain.
#[derive(Clone, Debug)]
pub struct JoinHosts(Vec<String>);

impl JoinHosts {
    /// Convos's conversation hosts of `environment`.
    pub fn defaults(environment: Environment) -> Self {
        let hosts: &[&str] = match environment {
            Environment::Production => &["popup.convos.org", "convos.app"],
            Environment::Staging => &["dev.convos.org", "convos.app"],
        };
        Self(hosts.iter().map(|h| (*h).to_owned()).collect())
    }

    pub(super) fn from_env(env: &Env<'_>, environment: Environment) -> Result<Self, ConfigError> {
        let Some(raw) = env.optional("POOL_JOIN_HOSTS") else { return Ok(Self::defaults(environment)) };
        let hosts: Vec<String> = raw
            .split(',')
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let bad = hosts
            .iter()
            .find(|h| !h.trim_start_matches("*.").bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        if let Some(bad) = bad {
            return Err(ConfigError::Invalid {
                name: "POOL_JOIN_HOSTS",
                reason: format!("{bad:?} is not a host name"),
            });
        }
        Ok(Self(hosts))
    }

    /// Whether `host` (lowercase, as a URL parser gives it) is listed.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.0.iter().any(|allowed| match allowed.strip_prefix("*.") {
            Some(suffix) => host.strip_suffix(suffix).is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            None => host == allowed,
        })
    }

    /// The list, for error messages.
    pub fn listed(&self) -> String {
        self.0.join(", ")
    }

    /// A regular expression of the https URLs these hosts allow (hosts in any case,
    /// a trailing dot, a port, a path), for the OpenAPI document.
    pub fn url_pattern(&self) -> String {
        let any_case = |host: &str| -> String {
            host.chars()
                .map(|c| match c {
                    '.' => "\\.".to_owned(),
                    c if c.is_ascii_alphabetic() => format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase()),
                    c => c.to_string(),
                })
                .collect()
        };
        let hosts: Vec<String> = self
            .0
            .iter()
            .map(|allowed| match allowed.strip_prefix("*.") {
                Some(suffix) => format!("([A-Za-z0-9-]+\\.)+{}", any_case(suffix)),
                None => any_case(allowed),
            })
            .collect();
        format!("^https://({})\\.?(:[0-9]{{1,4}})?([/?#][!-~]*)?$", hosts.join("|"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_subdomain_patterns() {
        let hosts = JoinHosts(vec!["convos.app".into(), "*.convos.org".into()]);
        for ok in ["convos.app", "convos.app.", "popup.convos.org", "a.b.convos.org"] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in ["evilconvos.app", "convos.org", "xconvos.org", "127.0.0.1", "api.railway.internal", ""] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let pattern = hosts.url_pattern();
        assert!(pattern.starts_with("^https://([cC][oO]"), "{pattern}");
        assert!(pattern.contains("|([A-Za-z0-9-]+\\.)+[cC][oO][nN]"), "{pattern}");
    }
}
