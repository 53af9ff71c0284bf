//! The API's OpenAPI 3.1 document and its handler, `GET /api/openapi.json`. The document is
//! generated from the handlers (each one's `#[utoipa::path]`) and the types they read and
//! answer (`ToSchema`, `IntoParams`, their doc comments). `tests/openapi.rs` validates it,
//! checks that it describes every route the router serves, runs Schemathesis on it, and
//! keeps `docs/openapi.json`, the copy for readers, equal to it.

use axum::Json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::OpenApi;

use super::error::ErrorBody;

/// The whole document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse",
        description = "Pulse's REST API: the `/api/phase4` endpoints of the system it replaces, \
            Prometheus' query API, request ingest, commands for workers, and the probes. The prose, \
            with curl examples, is docs/api.md. Every error is JSON `{\"error\": ..., \"detail\": ...}` \
            (Prometheus' shape on Prometheus' paths). With `auth.token` set, every POST (and, with \
            `auth.protect_reads`, every GET but the probes, the page and this document) needs \
            `Authorization: Bearer <token>`. Times are Unix milliseconds unless a name says otherwise.",
        license(name = "Apache-2.0")
    ),
    servers((url = "http://127.0.0.1:5000")),
    security((), ("bearer" = [])),
    tags(
        (name = "phase4", description = "the endpoints of the system Pulse replaces"),
        (name = "prometheus", description = "Prometheus' HTTP API, in its shapes"),
        (name = "ingest", description = "what services and workers send"),
        (name = "operations", description = "probes, metrics, the page, this document")
    ),
    paths(
        super::query::cache_stats,
        super::query::cache_clear,
        super::alerts::reload,
        super::actions::pause,
        super::actions::resume,
        super::anomalies::list,
        super::anomalies::one,
        super::anomalies::workload_events,
        super::alerts::active,
        super::alerts::history,
        super::alerts::acknowledge,
        super::predictions::list,
        super::actions::list,
        super::actions::one,
        super::actions::ack,
        super::status::status,
        super::status::healthz,
        super::status::readyz,
        openapi,
        super::web::index,
        super::metrics::metrics,
        super::query::dashboard_summary,
        super::query::gpu_profile,
        super::query::gpu_cleanup,
        super::traces::list,
        super::traces::one,
        super::traces::traced_requests,
        super::ingest::ingest_requests,
        super::alerts::rules,
        super::prom_rules::rules,
        super::prom_rules::alerts,
        super::prom::query_get,
        super::prom::query_post,
        super::prom::query_range_get,
        super::prom::query_range_post,
        super::prom_meta::labels,
        super::prom_meta::label_values,
        super::web::series,
        super::commands::subscribe
    ),
    components(schemas(ErrorBody)),
    modifiers(&Bearer, &Unauthorized, &JsonBodies)
)]
struct Api;

/// The `bearer` security scheme (`auth.token`).
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut Document) {
        let scheme =
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", scheme);
    }
}

/// A response whose body is the error body.
fn error_response(description: &str) -> utoipa::openapi::Response {
    let body = Content::new(Some(Ref::from_schema_name("Error")));
    ResponseBuilder::new()
        .description(description)
        .content("application/json", body)
        .build()
}

/// Every operation may answer 401: every POST once `auth.token` is set, every GET too with
/// `auth.protect_reads`; not those open to all (`security(())`: the probes, the page, this
/// document). Said once here rather than in each handler's annotation.
struct Unauthorized;

/// Every operation of the document, whatever its method.
fn operations(doc: &mut Document) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|i| {
        let methods = [&mut i.get, &mut i.put, &mut i.post, &mut i.delete];
        let more = [&mut i.options, &mut i.head, &mut i.patch, &mut i.trace];
        methods.into_iter().chain(more).flatten()
    })
}

/// Adds `response` to `op` under `status`.
fn answers(op: &mut Operation, status: &str, response: &utoipa::openapi::Response) {
    let responses = &mut op.responses.responses;
    responses.insert(status.to_string(), response.clone().into());
}

/// Whether an operation needs no token (its only security requirement is the empty one).
fn open_to_all(op: &Operation) -> bool {
    op.security.as_deref() == Some(&[SecurityRequirement::default()][..])
}

impl utoipa::Modify for Unauthorized {
    fn modify(&self, doc: &mut Document) {
        let response = error_response("no or a wrong bearer token (`auth.token`)");
        for op in operations(doc).filter(|op| !open_to_all(op)) {
            answers(op, "401", &response);
        }
    }
}

/// Every operation that reads a JSON body may answer 413 (over `server.max_body_bytes`)
/// and 415 (not `application/json`): the body extractor's errors, said once here.
struct JsonBodies;

impl utoipa::Modify for JsonBodies {
    fn modify(&self, doc: &mut Document) {
        let too_large = error_response("the body is over `server.max_body_bytes`");
        let not_json = error_response("the body is not `application/json`");
        let reads_json = |op: &&mut Operation| {
            let body = op.request_body.as_ref();
            body.is_some_and(|b| b.content.contains_key("application/json"))
        };
        for op in operations(doc).filter(reads_json) {
            answers(op, "413", &too_large);
            answers(op, "415", &not_json);
        }
    }
}

/// The whole document, as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(Api::openapi()).expect("the document serialises")
}

/// `GET /api/openapi.json`: the API's OpenAPI 3.1 document, as JSON.
#[utoipa::path(get, path = "/api/openapi.json", operation_id = "openapi", tag = "operations",
    summary = "this document", security(()),
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi() -> Json<serde_json::Value> {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_the_bearer_scheme_is_named() {
        let doc = document();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 50, "{} references", all.len());
        for r in all {
            let at = r.trim_start_matches("#/").split('/');
            assert!(
                !at.fold(&doc, |v, k| &v[k]).is_null(),
                "{r} resolves to nothing"
            );
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/healthz"]["get"].is_object());
    }

    #[test]
    fn every_operation_may_answer_401_with_the_error_body_but_the_open_ones() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        let mut open = Vec::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("a path item") {
                let schema = &op["responses"]["401"]["content"]["application/json"]["schema"];
                if op["security"] == serde_json::json!([{}]) {
                    assert!(schema.is_null(), "{method} {path} is open to all");
                    open.push(path.as_str());
                } else {
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/Error",
                        "{method} {path}"
                    );
                }
            }
        }
        open.sort();
        assert_eq!(open, ["/", "/api/openapi.json", "/healthz", "/readyz"]);
        assert!(doc["components"]["schemas"]["Error"].is_object());
    }

    #[test]
    fn every_operation_with_a_json_body_may_answer_413_and_415() {
        let doc = document();
        let mut with_body = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                if op["requestBody"]["content"]["application/json"].is_object() {
                    for code in ["413", "415"] {
                        let schema =
                            &op["responses"][code]["content"]["application/json"]["schema"];
                        assert_eq!(
                            schema["$ref"], "#/components/schemas/Error",
                            "{method} {path} {code}"
                        );
                    }
                    with_body.push(format!("{method} {path}"));
                }
            }
        }
        assert_eq!(with_body.len(), 4, "{with_body:?}");
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document();
        let mut seen = std::collections::HashMap::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                let at = format!("{method} {path}");
                let id = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{at}: no id"));
                if let Some(before) = seen.insert(id.to_string(), at.clone()) {
                    panic!("operationId {id:?} names both {before} and {at}");
                }
            }
        }
        assert!(seen.len() >= 30, "{seen:?}");
    }
}
