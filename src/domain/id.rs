use std::fmt;

use rand::{Rng, distr::Alphanumeric};
use serde::{Deserialize, Serialize};

/// An instance id: 12 characters of `A-Za-z0-9_-` (SPEC §5.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(String);

/// The reason a string is not an [`InstanceId`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("instance id must be 12 characters of A-Za-z0-9_-")]
pub struct InvalidInstanceId;

impl InstanceId {
    /// Length of every instance id.
    pub const LEN: usize = 12;

    /// A fresh random id. Alphanumerics only, which is a subset of the allowed set.
    pub fn generate() -> Self {
        let id: String = rand::rng().sample_iter(&Alphanumeric).take(Self::LEN).map(char::from).collect();
        Self(id)
    }

    /// Parses an id, rejecting anything that could not be a provider service suffix.
    pub fn parse(raw: &str) -> Result<Self, InvalidInstanceId> {
        let valid = raw.len() == Self::LEN && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid { Ok(Self(raw.to_owned())) } else { Err(InvalidInstanceId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceId {
    type Error = InvalidInstanceId;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> Self {
        id.0
    }
}

/// An id is read wherever a string is: SQL binds, URLs, logs.
impl std::ops::Deref for InstanceId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Stored as text; a row read back is checked like any other input.
impl sqlx::Type<sqlx::Postgres> for InstanceId {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <str as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl sqlx::postgres::PgHasArrayType for InstanceId {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Postgres> for InstanceId {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.0.as_str(), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for InstanceId {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Self::parse(<&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse() {
        for _ in 0..100 {
            let id = InstanceId::generate();
            assert_eq!(InstanceId::parse(id.as_str()), Ok(id));
        }
    }

    #[test]
    fn rejects_wrong_length_and_characters() {
        assert!(InstanceId::parse("abc").is_err());
        assert!(InstanceId::parse("abcdefghijk!").is_err());
        assert!(InstanceId::parse("abcdefghijklm").is_err());
        assert!(InstanceId::parse("ab_cd-ef1234").is_ok());
    }
}
