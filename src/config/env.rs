//! Reading variables: blank counts as unset, and every failure names the variable.

use std::{fmt, str::FromStr, time::Duration};

use secrecy::SecretString;

use super::ConfigError;

/// Variable access with the error shapes of [`ConfigError`].
pub(super) struct Env<'a>(pub(super) &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// A set, non-blank value; blank counts as unset so `.env` placeholders work.
    pub(super) fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    pub(super) fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    pub(super) fn secret(&self, name: &'static str) -> Result<SecretString, ConfigError> {
        self.required(name).map(SecretString::from)
    }

    pub(super) fn parse<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid { name, reason: format!("{e} (got {raw:?})") }),
        }
    }

    pub(super) fn positive<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr + Default + PartialEq,
        T::Err: fmt::Display,
    {
        let value = self.parse(name, default)?;
        if value == T::default() {
            return Err(ConfigError::Invalid { name, reason: "must be greater than 0".into() });
        }
        Ok(value)
    }

    pub(super) fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parse(name, default).map(Duration::from_millis)
    }

    /// An optional age: a number of seconds, or with a unit (`90s`, `30m`, `12h`, `2d`).
    pub(super) fn age(&self, name: &'static str) -> Result<Option<Duration>, ConfigError> {
        let Some(raw) = self.optional(name) else { return Ok(None) };
        let raw = raw.trim();
        let (number, unit) = raw.find(|c: char| !c.is_ascii_digit()).map_or((raw, ""), |i| raw.split_at(i));
        let scale = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => 0,
        };
        match number.parse::<u64>() {
            Ok(n) if n > 0 && scale > 0 => Ok(Some(Duration::from_secs(n * scale))),
            _ => Err(ConfigError::Invalid {
                name,
                reason: format!("expected e.g. 3600, 90s, 30m, 12h or 2d (got {raw:?})"),
            }),
        }
    }

    /// A period in [`Env::age`]'s forms, `default` when unset, `None` when `off`.
    pub(super) fn period(&self, name: &'static str, default: Duration) -> Result<Option<Duration>, ConfigError> {
        if self.optional(name).is_some_and(|raw| raw.trim() == "off") {
            return Ok(None);
        }
        Ok(Some(self.age(name)?.unwrap_or(default)))
    }

    pub(super) fn url(&self, name: &'static str) -> Result<String, ConfigError> {
        let raw = self.required(name)?;
        let parsed = reqwest::Url::parse(&raw).map_err(|e| ConfigError::Invalid { name, reason: e.to_string() })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError::Invalid { name, reason: "expected an http(s) URL".into() });
        }
        Ok(raw.trim_end_matches('/').to_owned())
    }

    pub(super) fn cron(&self, name: &'static str, default: &str) -> Result<cron::Schedule, ConfigError> {
        let raw = self.optional(name).unwrap_or_else(|| default.to_owned());
        cron::Schedule::from_str(&raw).map_err(|e| ConfigError::Invalid {
            name,
            reason: format!("{e}; expected cron with seconds, e.g. `*/30 * * * * *`"),
        })
    }
}
