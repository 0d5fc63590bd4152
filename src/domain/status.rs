use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The stored status of an instance row (SPEC §2.1). The database CHECK constraint
/// `instances_status_check` allows exactly these names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
