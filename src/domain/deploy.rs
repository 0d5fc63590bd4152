use serde::{Deserialize, Serialize};

/// A provider deploy status as reported by `POST /status/batch`. Unknown strings are
/// kept, not rejected: the provider may add states, and an unknown one changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct DeployStatus(String);

/// What a deploy status means for Pool's decisions (SPEC §5.1, §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeployPhase {
    /// `QUEUED WAITING BUILDING DEPLOYING`.
    Starting,
    /// `SUCCESS`.
    Running,
    /// `SLEEPING`: not dead; the instance wakes on request.
    Sleeping,
    /// `FAILED CRASHED REMOVED SKIPPED`.
    Dead,
    /// Anything else: change nothing.
    Unknown,
}

impl DeployStatus {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn phase(&self) -> DeployPhase {
        match self.0.as_str() {
            "QUEUED" | "WAITING" | "BUILDING" | "DEPLOYING" => DeployPhase::Starting,
            "SUCCESS" => DeployPhase::Running,
            "SLEEPING" => DeployPhase::Sleeping,
            "FAILED" | "CRASHED" | "REMOVED" | "SKIPPED" => DeployPhase::Dead,
            _ => DeployPhase::Unknown,
        }
    }
}

impl From<String> for DeployStatus {
    fn from(raw: String) -> Self {
        Self(raw)
    }
}

impl From<DeployStatus> for String {
    fn from(status: DeployStatus) -> Self {
        status.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_spec() {
        let phase = |s: &str| DeployStatus::new(s).phase();
        assert_eq!(phase("BUILDING"), DeployPhase::Starting);
        assert_eq!(phase("SUCCESS"), DeployPhase::Running);
        assert_eq!(phase("SLEEPING"), DeployPhase::Sleeping);
        for dead in ["FAILED", "CRASHED", "REMOVED", "SKIPPED"] {
            assert_eq!(phase(dead), DeployPhase::Dead);
        }
        assert_eq!(phase("MIGRATING"), DeployPhase::Unknown);
    }
}
