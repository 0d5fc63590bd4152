//! Pool's domain values: instance and job ids, job kinds, statuses and deploy statuses. No IO here, so
//! everything that touches the outside world receives values that are already valid.

mod deploy;
mod id;
mod job;
mod status;
pub mod text;
pub mod url;

pub use deploy::{DeployPhase, DeployStatus};
pub use id::{InstanceId, InvalidInstanceId};
pub use job::{JobId, JobKind};
pub use status::{InstanceStatus, UnknownStatus};

/// Service names at the provider are this prefix plus the instance id.
pub const SERVICE_PREFIX: &str = "convos-agent-";

/// The provider's service name of an instance.
pub fn service_name(id: &InstanceId) -> String {
    format!("{SERVICE_PREFIX}{id}")
}
