//! Checks an answer against a schema of the served OpenAPI document, for answers that
//! Schemathesis cannot provoke (anomalies, workload events: they need the detector to have
//! learnt and fired). Covers what the document uses: `$ref`, `type` (one or a list),
//! `required`, `properties` (no other keys unless `additionalProperties`), `items`, `enum`,
//! `minimum`/`maximum`, `oneOf`/`anyOf` (as "one of them"), `allOf` (an object's parts are
//! merged first: a flattened struct's fields are one object's).

use serde_json::Value;

/// The problems of `value` against the schema `name` of `pulse::openapi_document()`; empty
/// when it conforms.
pub fn problems(value: &Value, name: &str) -> Vec<String> {
    let doc = pulse::openapi_document();
    let schema = serde_json::json!({"$ref": format!("#/components/schemas/{name}")});
    let mut out = Vec::new();
    check(&doc, &schema, value, "$", &mut out);
    out
}

/// Panics naming every problem of `value` against the schema `name`.
pub fn assert_conforms(value: &Value, name: &str) {
    let problems = problems(value, name);
    assert!(problems.is_empty(), "not a {name}: {problems:#?}\n{value}");
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let at = r.trim_start_matches("#/").split('/');
            resolve(doc, at.fold(doc, |v, k| &v[k]))
        }
        None => schema,
    }
}

fn type_of(v: &Value) -> &'static [&'static str] {
    match v {
        Value::Null => &["null"],
        Value::Bool(_) => &["boolean"],
        Value::Number(n) if n.is_i64() || n.is_u64() => &["integer", "number"],
        Value::Number(_) => &["number"],
        Value::String(_) => &["string"],
        Value::Array(_) => &["array"],
        Value::Object(_) => &["object"],
    }
}

/// An object schema with its `allOf` parts' properties and required names merged in.
fn merged(doc: &Value, s: &Value) -> Value {
    let mut out = s.clone();
    out.as_object_mut().map(|o| o.remove("allOf"));
    for part in s["allOf"].as_array().into_iter().flatten() {
        let part = merged(doc, resolve(doc, part));
        for (k, p) in part["properties"].as_object().into_iter().flatten() {
            out["properties"][k] = p.clone();
        }
        for r in part["required"].as_array().into_iter().flatten() {
            if !out["required"].is_array() {
                out["required"] = Value::Array(Vec::new());
            }
            out["required"].as_array_mut().unwrap().push(r.clone());
        }
    }
    out
}

fn check(doc: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let s = &merged(doc, resolve(doc, schema));
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = s[key].as_array() {
            let fits = options.iter().any(|o| {
                let mut p = Vec::new();
                check(doc, o, v, at, &mut p);
                p.is_empty()
            });
            if !fits {
                out.push(format!("{at}: fits none of {key}"));
            }
        }
    }
    let allowed: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !allowed.is_empty() && !type_of(v).iter().any(|t| allowed.contains(t)) {
        out.push(format!("{at}: {v} is not {allowed:?}"));
        return;
    }
    if let Some(options) = s["enum"].as_array() {
        if !options.contains(v) {
            out.push(format!("{at}: {v} is not one of {options:?}"));
        }
    }
    if let Some(x) = v.as_f64() {
        if s["minimum"].as_f64().is_some_and(|m| x < m)
            || s["maximum"].as_f64().is_some_and(|m| x > m)
        {
            out.push(format!("{at}: {x} is out of range"));
        }
    }
    match v {
        Value::Object(map) => {
            let props = s["properties"].as_object();
            for req in s["required"].as_array().into_iter().flatten() {
                let req = req.as_str().unwrap_or_default();
                if !map.contains_key(req) {
                    out.push(format!("{at}: `{req}` is missing"));
                }
            }
            for (k, item) in map {
                let here = format!("{at}.{k}");
                match (props.and_then(|p| p.get(k)), &s["additionalProperties"]) {
                    (Some(p), _) => check(doc, p, item, &here, out),
                    (None, Value::Object(_)) => {
                        check(doc, &s["additionalProperties"], item, &here, out)
                    }
                    (None, Value::Bool(true)) => {}
                    (None, _) if props.is_some() => out.push(format!("{here}: not in the schema")),
                    (None, _) => {}
                }
            }
        }
        Value::Array(items) if s["items"].is_object() => {
            for (i, item) in items.iter().enumerate() {
                check(doc, &s["items"], item, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}
