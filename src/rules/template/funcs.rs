//! The functions a Prometheus 2.42 alert template can call: Go's `text/template`
//! built-ins and Prometheus' own (`humanize*`, `reReplaceAll`, `query`, `first`, ...).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::fmt::{format_g, sprint, sprintf};
use super::value::Value;

/// (labels, value) of each sample of a query's result.
pub type QueryRows = Vec<(BTreeMap<String, String>, f64)>;

/// Runs a PromQL instant query for `query`.
pub type QueryFn<'a> = dyn Fn(&str) -> Result<QueryRows, String> + 'a;

/// What functions see beyond their arguments.
#[derive(Default)]
pub struct Env<'a> {
    pub external_url: &'a str,
    pub query: Option<&'a QueryFn<'a>>,
}

/// Every function name a template may call (checked when the template is parsed).
pub const NAMES: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "slice",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "js",
    "urlquery",
    "call",
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "reReplaceAll",
    "safeHtml",
    "match",
    "title",
    "toUpper",
    "toLower",
    "graphLink",
    "tableLink",
    "sortByLabel",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "pathPrefix",
    "externalURL",
    "parseDuration",
    "stripPort",
    "stripDomain",
];

fn want(args: &[Value], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("wrong number of args: want {n} got {}", args.len()))
    }
}

fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        other => Err(format!(
            "expected string; found {} ({})",
            other.print(),
            other.type_name()
        )),
    }
}

/// Prometheus' `convertToFloat`: numbers, and strings that parse as one.
fn float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => s
            .parse()
            .map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

/// A query result sample (`.Labels`, `.Value`).
fn sample(labels: BTreeMap<String, String>, value: f64) -> Value {
    let mut r = BTreeMap::new();
    r.insert("Labels".to_string(), Value::Map(Arc::new(labels)));
    r.insert("Value".to_string(), Value::Float(value));
    Value::Record(Arc::new(r))
}

fn sample_parts(v: &Value) -> Result<(Arc<BTreeMap<String, String>>, f64), String> {
    if let Value::Record(r) = v {
        if let (Some(Value::Map(l)), Some(Value::Float(x))) = (r.get("Labels"), r.get("Value")) {
            return Ok((l.clone(), *x));
        }
    }
    Err(format!(
        "expected a query result sample, found {}",
        v.type_name()
    ))
}

pub(super) fn call(name: &str, args: &[Value], env: &Env) -> Result<Value, String> {
    let s = |s: String| Ok(Value::Str(s));
    match name {
        "and" => Ok(args
            .iter()
            .find(|a| !a.truth())
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Nil)),
        "or" => Ok(args
            .iter()
            .find(|a| a.truth())
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Nil)),
        "not" => {
            want(args, 1)?;
            Ok(Value::Bool(!args[0].truth()))
        }
        "len" => {
            want(args, 1)?;
            Ok(Value::Int(match &args[0] {
                Value::Str(x) => x.len(),
                Value::Map(m) => m.len(),
                Value::List(l) => l.len(),
                other => return Err(format!("len of type {}", other.type_name())),
            } as i64))
        }
        "index" => {
            let (first, keys) = args.split_first().ok_or("wrong number of args")?;
            keys.iter().try_fold(first.clone(), |v, k| match (&v, k) {
                (Value::Map(m), Value::Str(k)) => {
                    Ok(Value::Str(m.get(k).cloned().unwrap_or_default()))
                }
                (Value::Record(r), Value::Str(k)) => Ok(r.get(k).cloned().unwrap_or(Value::Nil)),
                (Value::List(l), Value::Int(i)) => l
                    .get(*i as usize)
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {i}")),
                _ => Err(format!("can't index item of type {}", v.type_name())),
            })
        }
        "slice" => match args {
            [Value::Str(x), rest @ ..] => {
                let at = |i: usize, d: usize| match rest.get(i) {
                    Some(Value::Int(n)) => *n as usize,
                    _ => d,
                };
                x.get(at(0, 0)..at(1, x.len()))
                    .map(|t| Value::Str(t.to_string()))
                    .ok_or_else(|| "slice index out of range".to_string())
            }
            _ => Err("slice of unsupported type".to_string()),
        },
        "print" => s(sprint(args, false)),
        "println" => s(sprint(args, true)),
        "printf" => {
            let (fmt, rest) = args.split_first().ok_or("wrong number of args")?;
            s(sprintf(&string(fmt)?, rest))
        }
        "eq" => {
            let (first, rest) = args
                .split_first()
                .ok_or("missing argument for comparison")?;
            if rest.is_empty() {
                return Err("missing argument for comparison".to_string());
            }
            Ok(Value::Bool(rest.iter().any(|r| equal(first, r))))
        }
        "ne" => {
            want(args, 2)?;
            Ok(Value::Bool(!equal(&args[0], &args[1])))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(args, 2)?;
            let ord = order(&args[0], &args[1])?;
            Ok(Value::Bool(match name {
                "lt" => ord.is_lt(),
                "le" => ord.is_le(),
                "gt" => ord.is_gt(),
                _ => ord.is_ge(),
            }))
        }
        "html" => s(html_escape(&sprint(args, false))),
        "js" => s(js_escape(&sprint(args, false))),
        "urlquery" => s(query_escape(&sprint(args, false))),
        "call" => Err("call: function values are not available in alert templates".to_string()),
        "query" => {
            want(args, 1)?;
            let q = env.query.ok_or("query is not available here")?;
            let rows = q(&string(&args[0])?)?;
            Ok(Value::List(Arc::new(
                rows.into_iter().map(|(l, v)| sample(l, v)).collect(),
            )))
        }
        "first" => {
            want(args, 1)?;
            match &args[0] {
                Value::List(l) => l
                    .first()
                    .cloned()
                    .ok_or_else(|| "first() called on vector with no elements".to_string()),
                other => Err(format!("first() of {}", other.type_name())),
            }
        }
        "label" => {
            want(args, 2)?;
            let (labels, _) = sample_parts(&args[1])?;
            s(labels.get(&string(&args[0])?).cloned().unwrap_or_default())
        }
        "value" => {
            want(args, 1)?;
            Ok(Value::Float(sample_parts(&args[0])?.1))
        }
        "strvalue" => {
            want(args, 1)?;
            let (labels, _) = sample_parts(&args[0])?;
            s(labels.get("__value__").cloned().unwrap_or_default())
        }
        "sortByLabel" => {
            want(args, 2)?;
            let label = string(&args[0])?;
            let Value::List(l) = &args[1] else {
                return Err("sortByLabel of a non-list".to_string());
            };
            let mut items: Vec<Value> = l.to_vec();
            items.sort_by_key(|v| {
                sample_parts(v)
                    .ok()
                    .and_then(|(l, _)| l.get(&label).cloned())
                    .unwrap_or_default()
            });
            Ok(Value::List(Arc::new(items)))
        }
        "args" => Ok(Value::Record(Arc::new(
            args.iter()
                .enumerate()
                .map(|(i, v)| (format!("arg{i}"), v.clone()))
                .collect(),
        ))),
        "reReplaceAll" => {
            want(args, 3)?;
            let re = regex::Regex::new(&string(&args[0])?).map_err(|e| e.to_string())?;
            s(
                re.replace_all(&string(&args[2])?, string(&args[1])?.as_str())
                    .into_owned(),
            )
        }
        "match" => {
            want(args, 2)?;
            let re = regex::Regex::new(&string(&args[0])?).map_err(|e| e.to_string())?;
            Ok(Value::Bool(re.is_match(&string(&args[1])?)))
        }
        "safeHtml" => {
            want(args, 1)?;
            s(string(&args[0])?)
        }
        "title" => {
            want(args, 1)?;
            s(title(&string(&args[0])?))
        }
        "toUpper" => {
            want(args, 1)?;
            s(string(&args[0])?.to_uppercase())
        }
        "toLower" => {
            want(args, 1)?;
            s(string(&args[0])?.to_lowercase())
        }
        "graphLink" | "tableLink" => {
            want(args, 1)?;
            let tab = if name == "graphLink" { 0 } else { 1 };
            s(format!(
                "/graph?g0.expr={}&g0.tab={tab}",
                query_escape(&string(&args[0])?)
            ))
        }
        "humanize" => {
            want(args, 1)?;
            s(humanize(float(&args[0])?))
        }
        "humanize1024" => {
            want(args, 1)?;
            s(humanize1024(float(&args[0])?))
        }
        "humanizeDuration" => {
            want(args, 1)?;
            s(humanize_duration(float(&args[0])?))
        }
        "humanizePercentage" => {
            want(args, 1)?;
            s(format!("{}%", format_g(float(&args[0])? * 100.0, 4)))
        }
        "humanizeTimestamp" => {
            want(args, 1)?;
            let v = float(&args[0])?;
            if !v.is_finite() {
                return s(format_g(v, 4));
            }
            s(go_time(v)?)
        }
        "toTime" => {
            want(args, 1)?;
            s(go_time(float(&args[0])?)?)
        }
        "pathPrefix" => {
            want(args, 0)?;
            let after_scheme = env.external_url.split_once("://").map_or("", |p| p.1);
            s(after_scheme
                .find('/')
                .map_or(String::new(), |i| after_scheme[i..].to_string()))
        }
        "externalURL" => {
            want(args, 0)?;
            s(env.external_url.to_string())
        }
        "parseDuration" => {
            want(args, 1)?;
            let ms = crate::rules::parse_duration_ms(&string(&args[0])?)?;
            Ok(Value::Float(ms as f64 / 1000.0))
        }
        "stripPort" => {
            want(args, 1)?;
            let hp = string(&args[0])?;
            s(split_host_port(&hp).map_or(hp.clone(), |(h, _)| h.to_string()))
        }
        "stripDomain" => {
            want(args, 1)?;
            let hp = string(&args[0])?;
            let (host, port) = split_host_port(&hp).unwrap_or((&hp, ""));
            if host.parse::<std::net::IpAddr>().is_ok() {
                return s(hp.clone());
            }
            let short = host.split('.').next().unwrap_or_default();
            s(if port.is_empty() {
                short.to_string()
            } else {
                format!("{short}:{port}")
            })
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => *x as f64 == *y,
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    let num = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x
                .partial_cmp(&y)
                .ok_or_else(|| "incomparable NaN".to_string()),
            _ => Err("incompatible types for comparison".to_string()),
        },
    }
}

/// Go's `net.SplitHostPort`: `None` where Go returns an error.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hp.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return (!port.contains(':')).then_some((host, port));
    }
    let (host, port) = hp.rsplit_once(':')?;
    (!host.contains(':')).then_some((host, port))
}

/// Go's deprecated `strings.Title`: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Prometheus' `humanize`: SI prefixes, 4 significant digits.
pub(super) fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", format_g(v, 4))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return format_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_g(v, 4))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return format_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", format_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {mins}m {secs}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {mins}m {secs}s")
        } else if mins != 0 {
            format!("{sign}{mins}m {secs}s")
        } else {
            format!("{sign}{}s", format_g(v, 4))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g(v, 4))
}

/// Go's `time.Time.String()` in UTC of Unix seconds: `2006-01-02 15:04:05.999999999 +0000 UTC`.
fn go_time(v: f64) -> Result<String, String> {
    if !v.is_finite() {
        return Err("value is NaN or Inf".to_string());
    }
    if v.abs() > 1e15 {
        return Err(format!("{v} is out of range for a time"));
    }
    let secs = v.floor() as i64;
    let nanos = (((v - v.floor()) * 1e9).round() as u32).min(999_999_999);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::promql::civil_from_days(days);
    let mut frac = format!("{nanos:09}");
    while frac.ends_with('0') {
        frac.pop();
    }
    let frac = if frac.is_empty() {
        frac
    } else {
        format!(".{frac}")
    };
    Ok(format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}{frac} +0000 UTC",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_formatting_functions() {
        assert_eq!(humanize(1_234_567.0), "1.235M");
        assert_eq!(humanize(0.0012), "1.2m");
        assert_eq!(humanize1024(1_048_576.0), "1Mi");
        assert_eq!(humanize_duration(3661.0), "1h 1m 1s");
        assert_eq!(humanize_duration(90061.0), "1d 1h 1m 1s");
        assert_eq!(humanize_duration(5.5), "5.5s");
        assert_eq!(humanize_duration(0.0015), "1.5ms");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(go_time(1.5).unwrap(), "1970-01-01 00:00:01.5 +0000 UTC");
        assert_eq!(
            go_time(1_600_000_000.0).unwrap(),
            "2020-09-13 12:26:40 +0000 UTC"
        );
        assert_eq!(title("gpu down on node-3"), "Gpu Down On Node-3");
        assert_eq!(query_escape("up == 0"), "up+%3D%3D+0");
    }

    #[test]
    fn host_and_port_are_split_as_go_does() {
        assert_eq!(split_host_port("node:9100"), Some(("node", "9100")));
        assert_eq!(split_host_port("[::1]:9100"), Some(("::1", "9100")));
        assert_eq!(split_host_port("node"), None);
        assert_eq!(split_host_port("::1"), None);
        let env = Env::default();
        let strip = |f: &str, x: &str| call(f, &[Value::Str(x.into())], &env).unwrap().print();
        assert_eq!(
            strip("stripPort", "node.example.com:9100"),
            "node.example.com"
        );
        assert_eq!(strip("stripDomain", "node.example.com:9100"), "node:9100");
        assert_eq!(strip("stripDomain", "10.0.0.1:9100"), "10.0.0.1:9100");
    }
}
