//! The API's OpenAPI 3.1 document, served at `GET /api/openapi.json`. The operations whose
//! handlers and bodies are typed are generated from them (utoipa: the handler's
//! `#[utoipa::path]`, the body's `ToSchema` and its doc comments); the others are written in
//! `docs/openapi.yaml` until their handlers are typed too. No path and no schema is in
//! both (tested below); `tests/openapi.rs` validates the whole and runs Schemathesis on it.

use serde_json::Value;
use utoipa::openapi::{Content, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::OpenApi;

use super::error::ErrorBody;

/// The operations not generated yet.
const HAND_WRITTEN: &str = include_str!("../../docs/openapi.yaml");

/// The generated operations and the schemas they name.
#[derive(OpenApi)]
#[openapi(
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
        super::status::openapi,
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
        super::prom::query_range_post
    ),
    components(schemas(ErrorBody)),
    modifiers(&Unauthorized)
)]
struct Generated;

/// Every generated operation may answer 401: every POST once `auth.token` is set, every GET
/// too with `auth.protect_reads`; not those open to all (`security(())`: the probes, the
/// page, this document). Said once here rather than in each handler's annotation.
struct Unauthorized;

/// Whether an operation needs no token (its only security requirement is the empty one).
fn open_to_all(op: &utoipa::openapi::path::Operation) -> bool {
    serde_json::to_value(&op.security).ok() == Some(serde_json::json!([{}]))
}

impl utoipa::Modify for Unauthorized {
    fn modify(&self, doc: &mut Document) {
        let error = Content::new(Some(Ref::from_schema_name("Error")));
        let response = ResponseBuilder::new()
            .description("no or a wrong bearer token (`auth.token`)")
            .content("application/json", error)
            .build();
        for item in doc.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.post].into_iter().flatten();
            for op in ops.filter(|op| !open_to_all(op)) {
                op.responses
                    .responses
                    .insert("401".to_string(), response.clone().into());
            }
        }
    }
}

/// Where the generated parts go: each is a map, merged name by name.
const MERGED: [&[&str]; 2] = [&["paths"], &["components", "schemas"]];

fn hand_written() -> Value {
    serde_yaml::from_str(HAND_WRITTEN).expect("docs/openapi.yaml is valid YAML")
}

fn generated() -> Value {
    serde_json::to_value(Generated::openapi()).expect("the generated document serialises")
}

/// The whole document: `docs/openapi.yaml` with the generated paths and schemas added.
pub fn document() -> Value {
    let mut doc = hand_written();
    let generated = generated();
    for at in MERGED {
        let from = at.iter().fold(&generated, |v, k| &v[*k]);
        let into = at.iter().fold(&mut doc, |v, k| &mut v[*k]);
        if let (Some(from), Some(into)) = (from.as_object(), into.as_object_mut()) {
            for (name, item) in from {
                into.insert(name.clone(), item.clone());
            }
        } else {
            debug_assert!(from.is_null(), "generated {at:?} is not a map");
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Value, at: &[&str]) -> Vec<String> {
        at.iter()
            .fold(v, |v, k| &v[*k])
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn nothing_is_both_generated_and_written() {
        let (written, generated) = (hand_written(), generated());
        for at in MERGED {
            let ours = names(&generated, at);
            assert!(
                !ours.is_empty() || at.len() == 2,
                "nothing generated under {at:?}"
            );
            let theirs = names(&written, at);
            let both: Vec<&String> = ours.iter().filter(|n| theirs.contains(n)).collect();
            assert!(
                both.is_empty(),
                "in docs/openapi.yaml and generated: {both:?}"
            );
        }
        let doc = document();
        assert!(doc["paths"]["/api/phase4/cache/stats"]["get"]["responses"]["200"].is_object());
        assert!(doc["paths"]["/api/phase4/healthz"].is_null());
        assert!(doc["paths"]["/healthz"]["get"].is_object());
    }

    #[test]
    fn every_generated_operation_may_answer_401_with_the_error_body_but_the_open_ones() {
        let generated = generated();
        let paths = generated["paths"].as_object().expect("paths");
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
        assert!(generated["components"]["schemas"]["Error"].is_object());
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document();
        let mut seen = std::collections::HashMap::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                if let Some(id) = op["operationId"].as_str() {
                    let at = format!("{method} {path}");
                    if let Some(before) = seen.insert(id.to_string(), at.clone()) {
                        panic!("operationId {id:?} names both {before} and {at}");
                    }
                }
            }
        }
        assert!(seen.len() >= 8, "{seen:?}");
    }
}
