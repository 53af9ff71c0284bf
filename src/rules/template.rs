//! Alert label and annotation templates: the subset of Go templates Prometheus rule
//! packs use. `{{ $labels.name }}`, `{{ $value }}`, `{{ $labels }}`-free text, and the
//! pipelines `humanize`, `humanizePercentage`, `printf "%.2f"` (as `x | f` or `f x`).
//! Anything else is refused when the rule file loads.

use std::collections::BTreeMap;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action { term: Term, funcs: Vec<Func> },
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Value,
    Label(String),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Func {
    Humanize,
    HumanizePercentage,
    Printf(String),
}

impl Template {
    /// Parses a template; the error names the construct that is not supported.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed action in template {text:?}"))?;
            let mut inner = after[..end].trim();
            inner = inner.strip_prefix('-').unwrap_or(inner).trim();
            inner = inner.strip_suffix('-').unwrap_or(inner).trim();
            parts.push(parse_action(inner).map_err(|e| format!("template {text:?}: {e}"))?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Expands with the alert's labels and value.
    pub fn expand(&self, labels: &impl LabelLookup, value: f64) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action { term, funcs } => {
                    let mut v = match term {
                        Term::Value => Val::Num(value),
                        Term::Label(l) => Val::Str(labels.label(l).unwrap_or_default().to_string()),
                        Term::Str(s) => Val::Str(s.clone()),
                    };
                    for f in funcs {
                        v = Val::Str(apply(f, &v));
                    }
                    out.push_str(&v.render());
                }
            }
        }
        out
    }
}

/// Where `$labels.x` is looked up.
pub trait LabelLookup {
    fn label(&self, name: &str) -> Option<&str>;
}

impl LabelLookup for BTreeMap<String, String> {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl LabelLookup for crate::model::labels::Labels {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name).map(|v| &**v)
    }
}

enum Val {
    Num(f64),
    Str(String),
}

impl Val {
    fn render(&self) -> String {
        match self {
            Val::Num(v) => format_go_float(*v),
            Val::Str(s) => s.clone(),
        }
    }
    fn num(&self) -> f64 {
        match self {
            Val::Num(v) => *v,
            Val::Str(s) => s.parse().unwrap_or(f64::NAN),
        }
    }
}

fn parse_term(t: &str) -> Result<Term, String> {
    if t == "$value" || t == ".Value" {
        Ok(Term::Value)
    } else if let Some(l) = t
        .strip_prefix("$labels.")
        .or_else(|| t.strip_prefix(".Labels."))
    {
        Ok(Term::Label(l.to_string()))
    } else if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        Ok(Term::Str(t[1..t.len() - 1].to_string()))
    } else {
        Err(format!(
            "`{t}` is not supported (use $value or $labels.<name>)"
        ))
    }
}

fn parse_func(words: &[&str]) -> Result<Func, String> {
    match words {
        ["humanize"] => Ok(Func::Humanize),
        ["humanizePercentage"] => Ok(Func::HumanizePercentage),
        ["printf", fmt] if fmt.starts_with('"') && fmt.ends_with('"') && fmt.len() >= 2 => {
            Ok(Func::Printf(fmt[1..fmt.len() - 1].to_string()))
        }
        _ => Err(format!(
            "`{}` is not supported (functions: humanize, humanizePercentage, printf \"fmt\")",
            words.join(" ")
        )),
    }
}

fn parse_action(inner: &str) -> Result<Part, String> {
    let mut stages = inner.split('|').map(str::trim);
    let first: Vec<&str> = stages.next().unwrap_or("").split_whitespace().collect();
    let (term, mut funcs) = match first.as_slice() {
        [t] => (parse_term(t)?, Vec::new()),
        // `f x` form: the last word is the term, the rest the function.
        [words @ .., t] => (parse_term(t)?, vec![parse_func(words)?]),
        [] => return Err("empty action".to_string()),
    };
    for stage in stages {
        let words: Vec<&str> = stage.split_whitespace().collect();
        funcs.push(parse_func(&words)?);
    }
    Ok(Part::Action { term, funcs })
}

fn apply(f: &Func, v: &Val) -> String {
    match f {
        Func::Humanize => humanize(v.num()),
        Func::HumanizePercentage => format!("{}%", format_g(v.num() * 100.0, 4)),
        Func::Printf(fmt) => printf(fmt, v),
    }
}

/// Go's `%v` of a float64, as `strconv.FormatFloat(v, 'g', -1, 64)`: shortest digits,
/// exponent form when the decimal exponent is below -4 or at least 6 (`1e+06`).
pub fn format_go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("e in {:e}");
    let exp: i32 = exp.parse().expect("exponent");
    if !(-4..6).contains(&exp) {
        return go_exponent(mantissa, exp);
    }
    format!("{v}")
}

fn go_exponent(mantissa: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// Go's `%.{prec}g`.
fn format_g(v: f64, prec: usize) -> String {
    if !v.is_finite() || v == 0.0 {
        return format_go_float(v);
    }
    let sci = format!("{:.*e}", prec.saturating_sub(1), v);
    let (mantissa, exp) = sci.split_once('e').expect("e");
    let exp: i32 = exp.parse().expect("exponent");
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= prec as i32 {
        go_exponent(&trim(mantissa), exp)
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

/// Prometheus' `humanize`: SI prefixes with 4 significant digits.
fn humanize(v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return format!("{:.4}", format_go_float(v));
    }
    let a = v.abs();
    if a >= 1.0 {
        let prefixes = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"];
        let mut x = v;
        let mut i = 0;
        while x.abs() >= 1000.0 && i < prefixes.len() - 1 {
            x /= 1000.0;
            i += 1;
        }
        format!("{}{}", format_g(x, 4), prefixes[i])
    } else {
        let prefixes = ["", "m", "u", "n", "p", "f", "a", "z", "y"];
        let mut x = v;
        let mut i = 0;
        while x.abs() < 1.0 && i < prefixes.len() - 1 {
            x *= 1000.0;
            i += 1;
        }
        format!("{}{}", format_g(x, 4), prefixes[i])
    }
}

/// Digits of precision `printf` gives at most; more is taken as this many (Rust's
/// formatter panics past 65 535, and no annotation needs a hundred digits).
const MAX_PRECISION: usize = 100;

/// The one-verb `printf` formats rule packs use: `%.Nf`, `%f`, `%d`, `%s`, `%v`, `%g`.
fn printf(fmt: &str, v: &Val) -> String {
    let Some(pos) = fmt.find('%') else {
        return fmt.to_string();
    };
    let (head, spec) = fmt.split_at(pos);
    let spec = &spec[1..];
    let verb_at = spec
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(spec.len());
    let (flags, rest) = spec.split_at(verb_at);
    let verb = rest.chars().next().unwrap_or('v');
    let tail = rest.get(1..).unwrap_or("");
    let precision: Option<usize> = flags
        .strip_prefix('.')
        .and_then(|p| p.parse().ok())
        .map(|p: usize| p.min(MAX_PRECISION));
    let body = match verb {
        'f' => format!("{:.*}", precision.unwrap_or(6), v.num()),
        'd' => format!("{}", v.num() as i64),
        'g' => match precision {
            Some(p) => format_g(v.num(), p),
            None => format_go_float(v.num()),
        },
        _ => v.render(),
    };
    format!("{head}{body}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        [("gpu".to_string(), "3".to_string())].into_iter().collect()
    }

    #[test]
    fn a_huge_printf_precision_is_capped_instead_of_panicking() {
        // Found by the rule_file fuzz target: `{:.*}` panics past 65 535 digits.
        for verb in ["f", "g"] {
            let t = Template::parse(&format!("{{{{ $value | printf \"%.99999999{verb}\" }}}}"))
                .unwrap();
            let out = t.expand(&labels(), 0.5);
            assert!(out.starts_with("0.5"), "{out}");
            assert!(out.len() <= MAX_PRECISION + 2, "{}", out.len());
        }
        let t = Template::parse("{{ $value | printf \"%.101f\" }}").unwrap();
        assert_eq!(t.expand(&labels(), 0.25).len(), 2 + MAX_PRECISION);
    }

    #[test]
    fn expands_labels_values_and_pipelines() {
        let t = Template::parse("GPU {{ $labels.gpu }} at {{ $value }}% ({{ $value | printf \"%.1f\" }}, {{ humanize $value }})").unwrap();
        assert_eq!(t.expand(&labels(), 91.25), "GPU 3 at 91.25% (91.2, 91.25)");
        let t = Template::parse("{{ $value | humanizePercentage }}").unwrap();
        assert_eq!(t.expand(&labels(), 0.5), "50%");
        assert_eq!(
            Template::parse("{{ humanize $value }}")
                .unwrap()
                .expand(&labels(), 1_234_567.0),
            "1.235M"
        );
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(format_go_float(1.0), "1");
        assert_eq!(format_go_float(0.1), "0.1");
        assert_eq!(format_go_float(123456.0), "123456");
        assert_eq!(format_go_float(1234567.0), "1.234567e+06");
        assert_eq!(format_go_float(1e-5), "1e-05");
    }

    #[test]
    fn unsupported_constructs_are_refused() {
        assert!(Template::parse("{{ range $labels }}x{{ end }}")
            .unwrap_err()
            .contains("range"));
        assert!(Template::parse("{{ $value | toUpper }}")
            .unwrap_err()
            .contains("toUpper"));
        assert!(Template::parse("{{ $value ")
            .unwrap_err()
            .contains("unclosed"));
    }
}
