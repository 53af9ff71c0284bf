//! The API's contract, served at `GET /api/openapi.json` and generated from the typed
//! handlers (`src/api/openapi.rs`):
//!
//! - it is a valid OpenAPI 3.1 document (`openapi-spec-validator` from PyPI);
//! - `docs/openapi.json`, the copy for readers, is the served document;
//! - it describes every route the router serves, with its methods, and no other;
//! - Schemathesis (PyPI) generates requests from it against the real binary and finds no
//!   server error, no undocumented status code or content type, and no answer off its
//!   schema. Left out there: the command stream (it never ends) and the cleanup (each
//!   waits its settle period).
//!
//! The PyPI tools are skipped, saying so, where they are not installed (`.ci/run` installs
//! them into `target/ci-venv`).

mod common;

use common::process::Pulse;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The whole document, as served.
fn document() -> serde_yaml::Value {
    serde_yaml::to_value(pulse::openapi_document()).unwrap()
}

/// `tool` where it runs, `None` (after saying so) where it does not.
fn tool(name: &str) -> Option<String> {
    let ok = Command::new(name)
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: {name} not found (pip install {name})");
    }
    ok.then(|| name.to_string())
}

#[test]
fn the_document_is_valid_openapi() {
    let Some(validator) = tool("openapi-spec-validator") else {
        return;
    };
    let file = std::env::temp_dir().join(format!("pulse-openapi-{}.json", std::process::id()));
    std::fs::write(&file, pulse::openapi_document().to_string()).unwrap();
    let out = Command::new(validator).arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `UPDATE_OPENAPI=1 cargo test --test openapi` writes it after a change of the API.
#[test]
fn docs_openapi_json_is_the_served_document() {
    let file = root().join("docs/openapi.json");
    let served = serde_json::to_string_pretty(&pulse::openapi_document()).unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&file, &served).unwrap();
    }
    let written = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        written == served,
        "docs/openapi.json is not the served document: UPDATE_OPENAPI=1 cargo test --test openapi"
    );
}

#[test]
fn the_document_describes_every_route_and_only_those() {
    // The routes as `src/api/mod.rs` declares them: `.route("PATH", get(...).post(...))`.
    let source = std::fs::read_to_string(root().join("src/api/mod.rs")).unwrap();
    let mut served = BTreeSet::new();
    for declaration in source.split(".route(").skip(1) {
        let path = declaration.split('"').nth(1).unwrap();
        if path.starts_with("/assets/") {
            continue;
        }
        // The handlers: up to the next builder call.
        let handlers = declaration.split("\n        .").next().unwrap();
        for method in ["get", "post"] {
            if handlers.contains(&format!("{method}(")) {
                served.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(served.len() > 30, "{served:?}");
    let mut documented = BTreeSet::new();
    for (path, item) in document()["paths"].as_mapping().unwrap() {
        for (method, _) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap().to_uppercase();
            documented.insert(format!("{method} {}", path.as_str().unwrap()));
        }
    }
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served, not in the document: {undocumented:?}"
    );
    assert!(
        not_served.is_empty(),
        "in the document, not served: {not_served:?}"
    );
}

#[test]
fn the_server_answers_as_the_document_says() {
    let pulse = Pulse::start(&[]);
    let (code, served) = pulse.get("/api/openapi.json");
    assert_eq!(code, 200);
    assert_eq!(
        served,
        pulse::openapi_document(),
        "/api/openapi.json is the whole document"
    );
    let Some(schemathesis) = tool("schemathesis") else {
        return;
    };
    let out = Command::new(schemathesis)
        .args(["run", &format!("{}/api/openapi.json", pulse.base), "--url", &pulse.base])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--phases", "examples,coverage,fuzzing"])
        .args(["--exclude-path", "/api/v1/commands", "--exclude-path", "/api/phase4/gpu/cleanup"])
        .args(["--request-timeout", "10", "--seed", "1", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    pulse.stop();
    assert!(out.status.success(), "{report}");
}

/// Durations in milliseconds the API names `<what>_ms`; every other `_ms` name must be an
/// instant, `<event>_at_ms` (docs/api.md, "Times").
const DURATIONS_MS: &[&str] = &[
    "settle_ms",
    "latency_ms",
    "min_latency_ms",
    "min_duration_ms",
    "duration_ms",
    "offset_ms",
    "ttl_ms",
    "refresh_ms",
    "fit_ms",
    "interval_ms",
    "for_ms",
    "keep_firing_for_ms",
];
/// The two query parameters that bound a list by time (instants, named for the bound).
const BOUNDS_MS: &[&str] = &["since_ms", "until_ms"];

/// Every property and parameter name in the document, with where it is.
fn names(v: &serde_yaml::Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().unwrap_or_default();
                if k == "properties" {
                    for name in v.as_mapping().into_iter().flat_map(|p| p.keys()) {
                        out.push((name.as_str().unwrap().to_string(), at.to_string()));
                    }
                }
                if k == "parameters" {
                    for p in v.as_sequence().into_iter().flatten() {
                        if let Some(name) = p["name"].as_str() {
                            out.push((name.to_string(), at.to_string()));
                        }
                    }
                }
                names(v, &format!("{at}/{k}"), out);
            }
        }
        serde_yaml::Value::Sequence(s) => s.iter().for_each(|v| names(v, at, out)),
        _ => {}
    }
}

#[test]
fn times_are_named_by_one_rule() {
    let mut all = Vec::new();
    names(&document(), "", &mut all);
    assert!(all.len() > 100, "{} names", all.len());
    let off: Vec<&(String, String)> = all
        .iter()
        .filter(|(name, at)| {
            // `at_ms` alone: the object is the event (an acknowledgement, a forecast point).
            let ms = name.ends_with("_ms")
                && !name.ends_with("_at_ms")
                && name != "at_ms"
                && !DURATIONS_MS.contains(&name.as_str())
                && !BOUNDS_MS.contains(&name.as_str());
            // Request records keep the services' own `timestamp` (the one input format).
            let request_record =
                at.contains("/api/v1/requests") || at == "/components/schemas/RequestRecord";
            let timestamp = name == "timestamp" && !request_record;
            ms || timestamp || name.starts_with("t_") || name == "time_ms"
        })
        .collect();
    assert!(
        off.is_empty(),
        "instants are <event>_at_ms, durations <what>_ms: {off:#?}"
    );
}

#[test]
fn the_tests_schema_check_finds_what_is_off() {
    use common::schema::problems;
    let good = serde_json::json!({"enabled": false, "total": 0, "offset": 0, "limit": 100,
        "count": 0, "anomalies": []});
    assert_eq!(problems(&good, "AnomalyPage"), Vec::<String>::new());
    let mut bad = good.clone();
    bad["total"] = "0".into();
    bad.as_object_mut().unwrap().remove("count");
    bad["colour"] = "red".into();
    bad["anomalies"] = serde_json::json!([{"id": 1, "reason": "bored"}]);
    let found = problems(&bad, "AnomalyPage").join("\n");
    for expected in [
        "$.total: \"0\" is not",
        "$: `count` is missing",
        "$.colour: not in the schema",
        "$.anomalies[0]: `series` is missing",
        "$.anomalies[0].reason: \"bored\" is not one of",
    ] {
        assert!(found.contains(expected), "{expected} not in:\n{found}");
    }
}

#[test]
fn every_example_fits_its_schema() {
    let doc = pulse::openapi_document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut checked = 0;
    for (name, schema) in schemas {
        let many = schema["examples"].as_array().into_iter().flatten();
        for example in schema.get("example").into_iter().chain(many) {
            let off = common::schema::problems(example, name);
            assert!(
                off.is_empty(),
                "{name}'s example is off its schema: {off:#?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked} examples");
}
