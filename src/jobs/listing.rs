//! What the provider lists, as Pool may act on it: only this environment's
//! services (with `RAILWAY_ENVIRONMENT_ID` set), matched to rows by service id.

use std::collections::HashMap;

use super::{Ctx, handler::JobError};
use crate::{
    domain::InstanceId,
    services::ServiceStatus,
    store::{InstanceRow, orphans},
};

/// With `RAILWAY_ENVIRONMENT_ID` set, one services project may hold several
/// environments' instances: only this environment's are adopted, checked or
/// destroyed (a service that names no environment is not ours either). Returns how
/// many were left out.
pub fn keep_own_environment(services: &mut Vec<ServiceStatus>, environment: Option<&str>) -> usize {
    let Some(environment) = environment else { return 0 };
    let before = services.len();
    services.retain(|s| s.environment_ids.iter().any(|e| e == environment));
    before - services.len()
}

/// Every service of this environment listed for `id` (upstream lists a duplicate
/// as a second entry), in the provider's order.
pub async fn services_of(ctx: &Ctx, id: &InstanceId) -> Result<Vec<ServiceStatus>, JobError> {
    let batch = ctx.services.status_batch(Some(std::slice::from_ref(id))).await?;
    let mut services: Vec<ServiceStatus> = batch.services.into_iter().filter(|s| s.instance_id == **id).collect();
    keep_own_environment(&mut services, ctx.config.railway_environment_id.as_deref());
    Ok(services)
}

/// Records `service` as an orphan, warning once (with its ids) when it is new.
pub async fn record_orphan(ctx: &Ctx, service: &ServiceStatus, reason: &str) -> Result<(), JobError> {
    let Some(service_id) = service.service_id.as_deref() else { return Ok(()) };
    let found = orphans::Found {
        service_id,
        instance_id: &service.instance_id,
        name: service.name.as_deref(),
        environment_id: service.environment_ids.first().map(String::as_str),
        reason,
    };
    if orphans::record(&ctx.db, &found).await? {
        tracing::warn!(
            instance_id = %service.instance_id,
            service_id,
            reason,
            "orphaned provider service: no row owns it and the services API cannot destroy it; delete it at the provider"
        );
    }
    Ok(())
}

/// One status batch read against the rows: which service each row owns, and which
/// listed services nobody owns.
pub struct Owners<'a> {
    by_instance: HashMap<&'a str, Vec<&'a ServiceStatus>>,
}

impl<'a> Owners<'a> {
    pub fn new(services: &'a [ServiceStatus]) -> Self {
        let mut by_instance: HashMap<&str, Vec<&ServiceStatus>> = HashMap::new();
        for service in services {
            by_instance.entry(service.instance_id.as_str()).or_default().push(service);
        }
        Self { by_instance }
    }

    /// The service `row` owns: the one with the service id create-instance answered
    /// (never merely the last one listed); without a recorded id, the only one of
    /// its instance id (two are ambiguous until the provision records its own).
    pub fn owned_by(&self, row: &InstanceRow) -> Option<&'a ServiceStatus> {
        let listed = self.by_instance.get(row.id.as_str())?;
        match row.service_id.as_deref() {
            Some(own) => listed.iter().find(|s| s.service_id.as_deref() == Some(own)).copied(),
            None if listed.len() == 1 => Some(listed[0]),
            None => None,
        }
    }

    /// Services of an instance id some row has, other than the service that row
    /// owns: duplicates that upstream's create left behind.
    pub fn duplicates(&self, rows: &[InstanceRow]) -> Vec<&'a ServiceStatus> {
        rows.iter()
            .filter(|row| row.service_id.is_some())
            .flat_map(|row| {
                let own = row.service_id.as_deref();
                let listed = self.by_instance.get(row.id.as_str()).map_or(&[][..], Vec::as_slice);
                listed.iter().filter(move |s| s.service_id.as_deref() != own).copied()
            })
            .collect()
    }
}
