//! Alert label and annotation templates: Go's `text/template` language with Prometheus
//! 2.42's data and functions. A template sees `$labels`, `$value`, `$externalLabels` and
//! `$externalURL` (and the same as `.Labels`, `.Value`, ...); it may use `if`, `with`,
//! `range`, variables, pipelines, Go's built-in functions and Prometheus' own (`humanize`,
//! `reReplaceAll`, `query`, ...). Parse errors (an unknown function, an unclosed action)
//! are refused when the rule file loads; an error while expanding becomes the text
//! `<error expanding template: ...>`, as Prometheus writes it.

mod exec;
mod fmt;
mod funcs;
mod parse;
mod value;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use fmt::format_go_float;
pub use funcs::{QueryFn, QueryRows};
use parse::{Node, Operand, Pipeline};
pub use value::Value;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
    /// The text, when the template has no action (most label templates): expanded as is.
    plain: Option<String>,
    /// The text as written (Prometheus' rules API shows it).
    source: String,
}

/// What a template is expanded with.
pub struct Data<'a> {
    /// The alert's labels (the sample's, `__name__` included as Prometheus passes them).
    pub labels: Arc<BTreeMap<String, String>>,
    pub value: f64,
    pub external_labels: Arc<BTreeMap<String, String>>,
    pub external_url: &'a str,
    /// Runs the `query` function; `None` where no query engine is at hand.
    pub query: Option<&'a QueryFn<'a>>,
    /// The data and starting variables, built once for all the templates of an alert.
    scope: std::cell::OnceCell<Vec<(String, Value)>>,
}

impl<'a> Data<'a> {
    pub fn new(
        labels: Arc<BTreeMap<String, String>>,
        value: f64,
        external_labels: Arc<BTreeMap<String, String>>,
        external_url: &'a str,
        query: Option<&'a QueryFn<'a>>,
    ) -> Self {
        Data {
            labels,
            value,
            external_labels,
            external_url,
            query,
            scope: std::cell::OnceCell::new(),
        }
    }

    /// `$` (the data: `.Labels`, `.Value`, ...) and Prometheus' prelude variables.
    fn scope(&self) -> &[(String, Value)] {
        self.scope.get_or_init(|| {
            let labels = Value::Map(self.labels.clone());
            let external = Value::Map(self.external_labels.clone());
            let url = Value::Str(self.external_url.to_string());
            let value = Value::Float(self.value);
            let root: BTreeMap<String, Value> = [
                ("Labels", labels.clone()),
                ("ExternalLabels", external.clone()),
                ("ExternalURL", url.clone()),
                ("Value", value.clone()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            vec![
                ("$".to_string(), Value::Record(Arc::new(root))),
                ("$labels".to_string(), labels),
                ("$externalLabels".to_string(), external),
                ("$externalURL".to_string(), url),
                ("$value".to_string(), value),
            ]
        })
    }
}

impl Data<'static> {
    /// Labels and a value, with no external labels, URL or query engine.
    pub fn simple(labels: BTreeMap<String, String>, value: f64) -> Self {
        Data::new(Arc::new(labels), value, Arc::default(), "", None)
    }
}

impl Template {
    /// Parses a template; the error names the construct or function that is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.contains("{{") {
            return Ok(Template {
                nodes: vec![Node::Text(text.to_string())],
                plain: Some(text.to_string()),
                source: text.to_string(),
            });
        }
        let nodes = parse::parse(text).map_err(|e| format!("template {text:?}: {e}"))?;
        check_functions(&nodes).map_err(|e| format!("template {text:?}: {e}"))?;
        Ok(Template {
            nodes,
            plain: None,
            source: text.to_string(),
        })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether expanding can give anything but the text itself.
    pub fn is_plain(&self) -> bool {
        self.plain.is_some()
    }

    /// Expands the template; an error is the message Prometheus would put in its place.
    pub fn try_expand(&self, data: &Data) -> Result<String, String> {
        if let Some(text) = &self.plain {
            return Ok(text.clone());
        }
        let scope = data.scope();
        let env = funcs::Env {
            external_url: data.external_url,
            query: data.query,
        };
        exec::Exec::run(&self.nodes, &scope[0].1, scope, &env)
    }

    /// Expands the template, an error written in its place as Prometheus does.
    pub fn expand(&self, data: &Data) -> String {
        self.try_expand(data).unwrap_or_else(|e| error_text(&e))
    }
}

/// What stands in a label or annotation whose template failed, as Prometheus writes it.
pub fn error_text(error: &str) -> String {
    format!("<error expanding template: {error}>")
}

/// Go's parser refuses a call to a function it does not know.
fn check_functions(nodes: &[Node]) -> Result<(), String> {
    fn pipe(p: &Pipeline) -> Result<(), String> {
        p.cmds.iter().flatten().try_for_each(|op| match op {
            Operand::Func(name) if !funcs::NAMES.contains(&name.as_str()) => {
                Err(format!("function {name:?} not defined"))
            }
            Operand::Group(inner, _) => pipe(inner),
            _ => Ok(()),
        })
    }
    nodes.iter().try_for_each(|n| match n {
        Node::Action(p) => pipe(p),
        Node::If(b) | Node::With(b) | Node::Range(b) => {
            pipe(&b.pipe)?;
            check_functions(&b.body)?;
            check_functions(&b.otherwise)
        }
        Node::Text(_) | Node::Break | Node::Continue => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(t: &str, value: f64) -> String {
        let labels = [("gpu", "3"), ("instance", "node-1:9100"), ("job", "dcgm")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut data = Data::simple(labels, value);
        data.external_labels = Arc::new(
            [("cluster".to_string(), "eu-1".to_string())]
                .into_iter()
                .collect(),
        );
        data.external_url = "https://prom.example.com/prometheus";
        Template::parse(t).unwrap().expand(&data)
    }

    #[test]
    fn expands_labels_values_and_pipelines() {
        assert_eq!(
            expand("GPU {{ $labels.gpu }} at {{ $value }}% ({{ $value | printf \"%.1f\" }}, {{ humanize $value }})", 91.25),
            "GPU 3 at 91.25% (91.2, 91.25)"
        );
        assert_eq!(expand("{{ $value | humanizePercentage }}", 0.5), "50%");
        assert_eq!(expand("{{ humanize $value }}", 1_234_567.0), "1.235M");
        assert_eq!(expand("{{ $value }}", 1_500_000.0), "1.5e+06");
        assert_eq!(expand("[{{ $labels.missing }}]", 1.0), "[]");
        assert_eq!(expand("{{ .Labels.job }}/{{ .Value }}", 2.0), "dcgm/2");
    }

    #[test]
    fn go_template_control_flow_and_variables() {
        assert_eq!(
            expand(
                "{{ if gt $value 90.0 }}hot{{ else if gt $value 50.0 }}warm{{ else }}cold{{ end }}",
                60.0
            ),
            "warm"
        );
        assert_eq!(expand("{{ with $labels.gpu }}gpu={{ . }}{{ end }}{{ with $labels.nope }}x{{ else }}none{{ end }}", 0.0), "gpu=3none");
        assert_eq!(
            expand(
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                0.0
            ),
            "gpu=3;instance=node-1:9100;job=dcgm;"
        );
        assert_eq!(
            expand("{{ $labels }}", 0.0),
            "map[gpu:3 instance:node-1:9100 job:dcgm]"
        );
        assert_eq!(
            expand(
                "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
                0.0
            ),
            "2"
        );
        assert_eq!(
            expand("a  {{- /* note */ -}}  b {{- \" c\" }}", 0.0),
            "ab c"
        );
        assert_eq!(
            expand(
                "{{ printf \"%s on %s\" $labels.gpu ($labels.instance | stripPort) }}",
                0.0
            ),
            "3 on node-1"
        );
        assert_eq!(
            expand(
                "{{ $externalLabels.cluster }} {{ .ExternalLabels.cluster }} {{ pathPrefix }}",
                0.0
            ),
            "eu-1 eu-1 /prometheus"
        );
        assert_eq!(
            expand(
                "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance | toUpper }}",
                0.0
            ),
            "NODE-1"
        );
        assert_eq!(
            expand("{{ $value | humanizeDuration }}", 3700.0),
            "1h 1m 40s"
        );
        assert_eq!(
            expand(
                "{{ if and (eq $labels.job \"dcgm\") (not (eq $labels.gpu \"4\")) }}yes{{ end }}",
                0.0
            ),
            "yes"
        );
        assert_eq!(
            expand("{{ index $labels \"gpu\" }} {{ len $labels }}", 0.0),
            "3 3"
        );
    }

    #[test]
    fn errors_at_parse_and_at_expansion() {
        assert!(Template::parse("{{ $value | noSuchFunc }}")
            .unwrap_err()
            .contains("noSuchFunc"));
        assert!(Template::parse("{{ $value ")
            .unwrap_err()
            .contains("unclosed"));
        assert!(Template::parse("{{ if $value }}x")
            .unwrap_err()
            .contains("end"));
        assert!(Template::parse("{{ define \"x\" }}y{{ end }}")
            .unwrap_err()
            .contains("define"));
        let out = expand("{{ query \"up\" }}", 0.0);
        assert!(out.starts_with("<error expanding template:"), "{out}");
        assert!(expand("{{ .Nope }}", 0.0).contains("can't evaluate field Nope"));
    }

    #[test]
    fn query_results_are_samples() {
        let q = |_: &str| -> Result<QueryRows, String> {
            Ok(vec![(
                [("node".to_string(), "a".to_string())]
                    .into_iter()
                    .collect(),
                4.0,
            )])
        };
        let mut data = Data::simple(BTreeMap::new(), 0.0);
        data.query = Some(&q);
        let t = Template::parse("{{ with query \"x\" }}{{ . | first | label \"node\" }}={{ . | first | value }}{{ end }}{{ range query \"x\" }} {{ .Labels.node }}{{ end }}").unwrap();
        assert_eq!(t.expand(&data), "a=4 a");
    }
}
