//! The OpenAPI document at `/openapi.json`. It is generated from the router itself:
//! every API router is a [`OpenApiRouter`] whose routes come from the handlers'
//! `#[utoipa::path]` annotations, so a routed handler is a documented one. This
//! module holds what no handler says: the document's info, the security scheme, and
//! the edits made once the paths have registered their schemas.

use axum::{Router, body::Bytes, http::header::CONTENT_TYPE, routing::get};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;

use super::{
    AppState,
    error::{ErrorBody, Invalid, Unauthorized, UnexpectedBody, UnknownId},
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Pool", description = "Keeps a pool of pre-warmed agent instances. Mutations answer 202 with a job."),
    components(
        // Named by a header parameter, which does not register its schema.
        schemas(super::claim::ClaimContractName, ErrorBody),
        // The shared answers; handlers reference them.
        responses(Unauthorized, Invalid, UnexpectedBody, UnknownId),
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
    AtLeastOneFilter.modify(&mut doc);
    doc
}

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

/// `GET /openapi.json`: the document, serialized once when the router is built.
pub fn router(doc: &utoipa::openapi::OpenApi) -> Router<AppState> {
    let body = Bytes::from(doc.to_json().expect("the OpenAPI document serializes"));
    Router::new().route("/openapi.json", get(move || async move { ([(CONTENT_TYPE, "application/json")], body) }))
}

/// A job kind: one of the catalogue's stable names.
pub fn kind_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(pool_jobs::KINDS.iter().copied()))
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
