//! Operator views: the whole fleet (`GET /api/pool/instances`) and the charts' data
//! (`GET /api/stats`). Read-only and without secrets, but with provider ids, URLs
//! and last errors: operators only.

use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState,
    error::{ApiError, Busy, Invalid, Unauthorized},
    extract::{ApiQuery, page},
    reads::OperatorRead,
};
use crate::{
    buffer,
    config::Config,
    domain::InstanceStatus,
    memo::Coalesced,
    metrics::stats::{self, Range, Stats},
    store::{
        Counts, InstanceRow, instances,
        orphans::{self, Orphan},
    },
};

const PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(fleet)).routes(routes!(charts))
}

/// `?status=&limit=&offset=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FleetParams {
    /// Only instances in this status.
    status: Option<InstanceStatus>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    #[param(minimum = 0, maximum = 10_000_000)]
    offset: Option<i64>,
}

/// One instance of the fleet.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetInstance {
    id: String,
    name: Option<String>,
    status: InstanceStatus,
    /// The provider's deploy status, e.g. `SUCCESS`, `BUILDING`, `CRASHED`.
    deploy_status: Option<String>,
    url: Option<String>,
    service_id: Option<String>,
    /// The image the provider reports for the service.
    image: Option<String>,
    created_at: DateTime<Utc>,
    status_changed_at: DateTime<Utc>,
    last_error: Option<String>,
    /// The service in Railway's dashboard (with `RAILWAY_PROJECT_ID` set).
    railway_url: Option<String>,
}

/// A page of instances, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Fleet {
    instances: Vec<FleetInstance>,
    /// Instances the filter selects, over all pages.
    total: i64,
    limit: i64,
    offset: i64,
    /// Every orphaned provider service (no row owns it, the services API cannot
    /// destroy it): delete these at the provider.
    orphans: Vec<FleetOrphan>,
}

/// A provider service no row owns, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetOrphan {
    #[serde(flatten)]
    service: Orphan,
    /// The service in Railway's dashboard (with `RAILWAY_PROJECT_ID` set).
    railway_url: Option<String>,
}

/// Every instance (idle, provisioning and draining too), with age, deploy status,
/// last error and a link to the service in Railway.
#[utoipa::path(get, path = "/api/pool/instances", tag = "pool", security(("bearer" = [])), params(FleetParams),
    responses((status = 200, body = Fleet), Invalid, Unauthorized, Busy))]
async fn fleet(
    OperatorRead { state, .. }: OperatorRead,
    ApiQuery(params): ApiQuery<FleetParams>,
) -> Result<Json<Fleet>, ApiError> {
    let (limit, offset) = page(params.limit, params.offset, PAGE, MAX_PAGE)?;
    let (rows, total) = instances::fleet(&state.db, params.status, limit, offset).await?;
    let instances = rows.into_iter().map(|row| fleet_instance(&state.config, row)).collect();
    let orphans = orphans::all(&state.db).await?;
    let orphans = orphans
        .into_iter()
        .map(|service| FleetOrphan { railway_url: railway_url(&state.config, Some(&service.service_id)), service })
        .collect();
    Ok(Json(Fleet { instances, total, limit, offset, orphans }))
}

/// The service in Railway's dashboard, when the project is known.
fn railway_url(config: &Config, service_id: Option<&str>) -> Option<String> {
    let (project, service) = (config.railway_project_id.as_ref()?, service_id?);
    let env = config.railway_environment_id.as_ref().map(|e| format!("?environmentId={e}")).unwrap_or_default();
    Some(format!("https://railway.com/project/{project}/service/{service}{env}"))
}

fn fleet_instance(config: &Config, row: InstanceRow) -> FleetInstance {
    let railway_url = railway_url(config, row.service_id.as_deref());
    FleetInstance {
        id: row.id.to_string(),
        name: row.name,
        status: row.status,
        deploy_status: row.deploy_status,
        url: row.url,
        service_id: row.service_id,
        image: row.image,
        created_at: row.created_at,
        status_changed_at: row.status_changed_at,
        last_error: row.last_error,
        railway_url,
    }
}

/// `/api/pool/counts`: the counts by status (flattened, as before), the claims
/// waiting for an instance, and the warm target.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolCounts {
    #[serde(flatten)]
    counts: Counts,
    /// Claims waiting for an instance (`Prefer: wait`).
    waiting: i64,
    /// What replenish keeps `idle + provisioning` at, and why.
    buffer: buffer::Target,
    /// Live instances (not draining) per image the provider reports.
    images: std::collections::BTreeMap<String, i64>,
    /// Provider services no row owns and the services API cannot destroy; listed
    /// with `GET /api/pool/instances`. Never counted as capacity.
    orphans: i64,
    /// Cost (warm instance-hours) and service (claims bound at once) over the last
    /// hour and day.
    glance: crate::store::metrics::AtAGlance,
}

pub async fn pool_counts(state: &AppState) -> Result<PoolCounts, ApiError> {
    // Polled by every dashboard and monitor: a flood of them costs one read at a time.
    static VIEW: Coalesced<buffer::View> = Coalesced::new();
    let view = VIEW.get_or_try(|| buffer::view(&state.db, state.config.buffer_settings())).await?;
    let images = view.images.into_iter().collect();
    let (counts, waiting, buffer, orphans, glance) =
        (view.counts, view.waiting, view.target, view.orphans, view.glance);
    Ok(PoolCounts { counts, waiting, buffer, images, orphans, glance })
}

/// `?range=hour|day`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StatsParams {
    /// Default `hour`.
    range: Option<Range>,
}

/// Per-minute series for the dashboard's charts, the same from every web replica.
#[utoipa::path(get, path = "/api/stats", tag = "pool", security(("bearer" = [])), params(StatsParams),
    responses((status = 200, body = Stats), Invalid, Unauthorized, Busy))]
async fn charts(
    OperatorRead { state, .. }: OperatorRead,
    ApiQuery(params): ApiQuery<StatsParams>,
) -> Result<Json<Stats>, ApiError> {
    let range = params.range.unwrap_or_default();
    Ok(Json(stats::load(&state.db, range, state.config.min_idle).await?))
}
