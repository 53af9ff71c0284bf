//! Tests of `service.rs`.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn the_built_in_file_is_the_default() {
    let c = ServiceConfig::load(EMBEDDED_NAME, EMBEDDED, no_env).unwrap();
    assert_eq!(c, ServiceConfig::default());
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err = ServiceConfig::load(
        "x.toml",
        "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
        no_env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("x.toml:3:1: `server.lisen`: unknown field `lisen`"),
        "{err}"
    );
}

#[test]
fn bad_value_names_file_line_and_key() {
    let err = ServiceConfig::load("x.toml", "[cache]\nmax_entries = 0\n", no_env)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("x.toml:2:15: `cache.max_entries`:"),
        "{err}"
    );
    let err = ServiceConfig::load("x.toml", "[log]\nlevel = \"verbose!!\"\n", no_env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.toml:2:") && err.contains("log.level"),
        "{err}"
    );
}

#[test]
fn environment_overrides_win_and_bad_ones_name_the_variable() {
    let env = |v: &str| match v {
        "PULSE_LISTEN" => Some("0.0.0.0:9000".to_string()),
        "DASHBOARD_HISTORY_SIZE" => Some("500".to_string()),
        _ => None,
    };
    let c = ServiceConfig::load("x.toml", "", env).unwrap();
    assert_eq!(c.server.listen.port(), 9000);
    assert_eq!(c.dashboard.history_size.map(|n| n.get()), Some(500));

    let bad = |v: &str| (v == "PULSE_CACHE_MAX_ENTRIES").then(|| "lots".to_string());
    let err = ServiceConfig::load("x.toml", "", bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("environment variable PULSE_CACHE_MAX_ENTRIES: cache.max_entries"),
        "{err}"
    );
}

#[test]
fn rule_paths_take_a_toml_list_a_plain_path_or_a_comma_list() {
    let paths = |raw: &str| {
        let raw = raw.to_string();
        let env = move |v: &str| (v == "PULSE_RULE_PATHS").then(|| raw.clone());
        ServiceConfig::load("x.toml", "", env).unwrap().rules.paths
    };
    let p = |s: &str| std::path::PathBuf::from(s);
    assert_eq!(
        paths(r#"["a.yml", "rules/"]"#),
        vec![p("a.yml"), p("rules/")]
    );
    assert_eq!(paths("a.yml"), vec![p("a.yml")]);
    assert_eq!(paths("a.yml, rules/"), vec![p("a.yml"), p("rules/")]);
}
