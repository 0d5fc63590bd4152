//! The OpenAPI document at `/openapi.json`. It is generated from the router itself:
//! every API router is a [`OpenApiRouter`] whose routes come from the handlers'
//! `#[utoipa::path]` annotations, so a routed handler is a documented one. This
//! module holds what no handler says: the document's info, the security scheme, and
//! the edits made once the paths have registered their schemas.

use axum::{Router, body::Bytes, http::header::CONTENT_TYPE, routing::get};
use utoipa::{
    Modify, OpenApi, PartialSchema, ToSchema,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;

use super::{
    AppState,
    error::{Busy, ErrorBody, Forbidden, Invalid, TooManyAuthFailures, Unauthorized, UnexpectedBody, UnknownId},
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Pool", description = "Keeps a pool of pre-warmed agent instances. Mutations answer 202 with a job."),
    components(
        // Named by a header parameter, which does not register its schema.
        schemas(super::claim::ClaimContractName, ErrorBody),
        // The shared answers; handlers reference them.
        responses(Unauthorized, Forbidden, TooManyAuthFailures, Busy, Invalid, UnexpectedBody, UnknownId),
    )
)]
struct ApiDoc;

/// The router the API routers are merged into: it carries the document's info.
pub fn base() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
}

/// Completes the document the routers assembled. Runs after the split, so the edits
/// apply to the schemas the paths registered.
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    BearerAuth.modify(&mut doc);
    ScopedKeys.modify(&mut doc);
    AtLeastOneFilter.modify(&mut doc);
    TypedJobs.modify(&mut doc);
    doc
}

/// The `joinUrl` pattern of this process's `POOL_JOIN_HOSTS`, so the document says
/// which links a claim accepts.
pub fn with_join_hosts(doc: &mut utoipa::openapi::OpenApi, hosts: &crate::config::JoinHosts) {
    use utoipa::openapi::{RefOr, schema::Schema};
    let Some(RefOr::T(Schema::Object(body))) = doc.components.as_mut().and_then(|c| c.schemas.get_mut("ClaimBody"))
    else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(join_url))) = body.properties.get_mut("joinUrl") {
        join_url.pattern = Some(hosts.url_pattern());
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Every operation that checks a key may also answer 403 (the key's scope does not
/// allow it) and 429 (too many failed key checks): added here once rather than in
/// every handler's list.
struct ScopedKeys;

impl Modify for ScopedKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::{IntoResponses, openapi::path::Operation};
        let extra: Vec<_> = [Forbidden::responses(), TooManyAuthFailures::responses()].into_iter().flatten().collect();
        let operations = openapi.paths.paths.values_mut().flat_map(|item| {
            [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch].into_iter().flatten()
        });
        for Operation { responses, .. } in operations {
            if responses.responses.contains_key("401") {
                responses.responses.extend(extra.iter().cloned());
            }
        }
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

/// `JobDoc.args` and `JobDoc.result` typed by kind. Each kind's payload and result are
/// components titled with the kind (`ClaimAndProvision`, `ClaimAndProvisionResult`,
/// …); `args` is any of the payloads and `result` any of the results or `null`. The
/// unions are `anyOf`, not `oneOf`: payloads overlap (`{}` is a `reconcile`,
/// `replenish`, `enrich_metadata` and `noop` payload alike), so only `kind` tells
/// which one a job holds.
struct TypedJobs;

impl Modify for TypedJobs {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            ObjectBuilder, RefOr,
            schema::{AnyOfBuilder, Schema, Type},
        };
        let mut kinds = KindSchemas::default();
        macro_rules! add_each {
            ($($job:path,)*) => { $(kinds.add::<$job>();)* };
        }
        crate::jobs::for_each_kind!(add_each);
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.extend(kinds.schemas);
        let Some(RefOr::T(Schema::Object(job))) = components.schemas.get_mut("JobDoc") else {
            panic!("JobDoc is an object schema of the document");
        };
        let args = kinds.args.into_iter().fold(AnyOfBuilder::new(), AnyOfBuilder::item);
        let args = args.description(Some("The job's payload: the schema titled with its `kind`."));
        let null = ObjectBuilder::new().schema_type(Type::Null);
        let result = kinds.results.into_iter().fold(AnyOfBuilder::new(), AnyOfBuilder::item).item(null);
        let result = result.description(Some(
            "What the job's successful run recorded (`null` until then): the schema titled with its `kind`.",
        ));
        job.properties.insert("args".into(), args.into());
        job.properties.insert("result".into(), result.into());
    }
}

/// Every kind's payload and result schemas, and references to them.
#[derive(Default)]
struct KindSchemas {
    schemas: Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
    args: Vec<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>,
    results: Vec<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>,
}

impl KindSchemas {
    fn add<J: crate::jobs::Job>(&mut self) {
        use utoipa::openapi::Ref;
        let payload = J::name().into_owned();
        let result = format!("{payload}Result");
        self.schemas.push((payload.clone(), titled(J::schema(), &J::KIND)));
        self.schemas.push((result.clone(), titled(J::Output::schema(), &J::KIND)));
        J::schemas(&mut self.schemas);
        J::Output::schemas(&mut self.schemas);
        self.args.push(Ref::from_schema_name(payload).into());
        self.results.push(Ref::from_schema_name(result).into());
    }
}

/// `schema` with `kind` as its title.
fn titled(
    mut schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    kind: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::{RefOr, schema::Schema};
    match &mut schema {
        RefOr::T(Schema::Object(object)) => object.title = Some(kind.into()),
        RefOr::T(Schema::OneOf(one_of)) => one_of.title = Some(kind.into()),
        _ => panic!("the {kind} schema is an object or a oneOf"),
    }
    schema
}

/// `GET /openapi.json`: the document, serialized once when the router is built.
pub fn router(doc: &utoipa::openapi::OpenApi) -> Router<AppState> {
    let body = Bytes::from(doc.to_json().expect("the OpenAPI document serializes"));
    Router::new().route("/openapi.json", get(move || async move { ([(CONTENT_TYPE, "application/json")], body) }))
}

/// A job kind: one of the catalogue's stable names.
pub fn kind_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(crate::jobs::KINDS.iter().map(|kind| kind.as_str())))
        .description(Some("A job kind"))
        .build()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn document() -> Value {
        serde_json::to_value(super::super::api().1).unwrap()
    }

    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    /// Every schema or response a path or a schema names is in `components`.
    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let path = target.strip_prefix("#/").unwrap_or_else(|| panic!("{target}"));
            let resolved = path.split('/').fold(&doc, |node, key| &node[key]);
            assert!(resolved.is_object(), "{target} does not resolve");
        }
    }
}
