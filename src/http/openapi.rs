//! The OpenAPI document at `/openapi.json`, generated from the handlers' annotations.

use axum::{Json, Router, routing::get};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

use super::{AppState, claim, error::ErrorBody, fleet, health, job_kinds, jobs, jobs_bulk, pool};
use crate::{
    queue::JobDoc,
    store::{Counts, JobState},
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Pool", description = "Keeps a pool of pre-warmed agent instances. Mutations answer 202 with a job."),
    paths(
        health::healthz, health::readyz, health::version, health::metrics,
        pool::counts, pool::agents, claim::claim, pool::replenish, pool::drain, pool::reconcile,
        pool::enrich, pool::kill, pool::dismiss,
        jobs::list, jobs::show, jobs::retry, jobs::cancel, jobs_bulk::retry_all, jobs_bulk::cancel_all,
        job_kinds::list, job_kinds::pause, job_kinds::resume, fleet::fleet, fleet::charts,
    ),
    components(schemas(JobDoc, JobState, ErrorBody, Counts, claim::ClaimBody, pool::CountBody, pool::DrainBody, pool::EnrichBody, pool::Agents, pool::Agent, jobs::JobPage,
        jobs_bulk::RetryFilter, jobs_bulk::CancelFilter, jobs_bulk::Retried, jobs_bulk::Cancelled, super::extract::EmptyBody)),
    modifiers(&BearerAuth, &AtLeastOneFilter),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The bulk filters need at least one field. utoipa 5 writes `min_properties` on a
/// struct as `maxProperties`; set the bound here instead.
struct AtLeastOneFilter;

impl Modify for AtLeastOneFilter {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, schema::Schema};
        let Some(components) = openapi.components.as_mut() else { return };
        for name in ["RetryFilter", "CancelFilter"] {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
                object.min_properties = Some(1);
                object.max_properties = None;
            }
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}

/// A job kind: one of the catalogue's stable names.
pub fn kind_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(pool_jobs::KINDS.iter().copied()))
        .description(Some("A job kind"))
        .build()
}
