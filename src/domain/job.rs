use std::fmt;

use serde::{Deserialize, Serialize};

/// A job id: a ULID, so ids sort by creation. Ids of rows written by the previous
/// release are kept as they were, so any string read back from the table is one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct JobId(String);

impl JobId {
    /// A fresh id. Ids from one process increase strictly, even within the same
    /// millisecond, so "newest first" (ordering by id) is exact for one producer.
    pub fn generate() -> Self {
        static GENERATOR: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
        let mut generator = GENERATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Self(generator.generate().unwrap_or_else(|_| ulid::Ulid::generate()).to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An id from a URL or a command line: looked up, never trusted to exist.
impl From<String> for JobId {
    fn from(raw: String) -> Self {
        Self(raw)
    }
}

impl From<&str> for JobId {
    fn from(raw: &str) -> Self {
        Self(raw.to_owned())
    }
}

impl std::str::FromStr for JobId {
    type Err = std::convert::Infallible;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(raw.into())
    }
}

impl std::ops::Deref for JobId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stable name of a job kind this release declares: made from a kind's own
/// `Job::KIND` or found by name in the kind list (`jobs::kind_named`). Rows keep the
/// stored name as text, since a newer release may already write kinds this one lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JobKind(&'static str);

impl JobKind {
    /// Declares a kind; only a kind's own file calls this.
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::ops::Deref for JobKind {
    type Target = str;
    fn deref(&self) -> &str {
        self.0
    }
}

/// Looked up by the name a row stores (the hash is the name's).
impl std::borrow::Borrow<str> for JobKind {
    fn borrow(&self) -> &str {
        self.0
    }
}

impl PartialEq<String> for JobKind {
    fn eq(&self, other: &String) -> bool {
        self.0 == other
    }
}

impl PartialEq<str> for JobKind {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<JobKind> for str {
    fn eq(&self, other: &JobKind) -> bool {
        self == other.0
    }
}

impl PartialEq<JobKind> for String {
    fn eq(&self, other: &JobKind) -> bool {
        self == other.0
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Postgres> for JobKind {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.0, buf)
    }
}

impl sqlx::Type<sqlx::Postgres> for JobKind {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <str as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl sqlx::postgres::PgHasArrayType for JobKind {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
    }
}
