use serde::{Deserialize, Serialize};

use crate::domain::{DeployStatus, InstanceId};

/// Answer of `POST /create-instance`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedInstance {
    pub instance_id: InstanceId,
    pub service_id: String,
    /// Not known yet while the domain is being assigned.
    pub url: Option<String>,
    #[serde(default)]
    pub services: serde_json::Value,
}

/// Answer of `DELETE /destroy/:id`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Destroyed {
    pub instance_id: InstanceId,
    #[serde(default)]
    pub destroyed: serde_json::Value,
}

/// Answer of `POST /status/batch`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusBatch {
    pub project_id: Option<String>,
    pub services: Vec<ServiceStatus>,
}

/// One service in a status batch. `instance_id` stays a plain string: services not
/// created by Pool may not follow its id rules, and must not fail the whole batch.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub instance_id: String,
    pub service_id: Option<String>,
    pub name: Option<String>,
    pub deploy_status: Option<DeployStatus>,
    pub domain: Option<String>,
    pub image: Option<String>,
    #[serde(default)]
    pub environment_ids: Vec<String>,
}
