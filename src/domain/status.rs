use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The stored status of an instance row (SPEC §2.1). The database CHECK constraint
/// `instances_status_check` allows exactly these names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStatus {
    Provisioning,
    Idle,
    Claiming,
    Claimed,
    Crashed,
    Draining,
}

/// A status string the database holds but this build does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown instance status {0:?}")]
pub struct UnknownStatus(pub String);

impl InstanceStatus {
    /// Every status, in the order counts are shown.
    pub const ALL: [Self; 6] =
        [Self::Provisioning, Self::Idle, Self::Claiming, Self::Claimed, Self::Crashed, Self::Draining];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Idle => "idle",
            Self::Claiming => "claiming",
            Self::Claimed => "claimed",
            Self::Crashed => "crashed",
            Self::Draining => "draining",
        }
    }
}

impl FromStr for InstanceStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// For decoding rows: a status this build does not know is an error, never a guess.
impl TryFrom<String> for InstanceStatus {
    type Error = UnknownStatus;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_decode_known_statuses_and_refuse_others() {
        for status in InstanceStatus::ALL {
            assert_eq!(InstanceStatus::try_from(status.as_str().to_owned()).unwrap(), status);
        }
        assert!(InstanceStatus::try_from("hibernating".to_owned()).is_err(), "never guessed as draining");
    }
}
