//! Label matchers, as in PromQL: `=`, `!=`, `=~`, `!~` (regexes fully anchored).
//! `__name__` matches the metric name.

use regex::Regex;

use super::series::SeriesKey;

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

/// One label matcher. A missing label matches as the empty string, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
    /// Compiled, anchored regex for `Re` / `NotRe`.
    regex: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; a bad regex is an error naming it.
    pub fn new(label: &str, op: MatchOp, value: &str) -> Result<Self, regex::Error> {
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(Regex::new(&format!("^(?:{value})$"))?),
            _ => None,
        };
        Ok(Matcher {
            label: label.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// A `=~` or `!~` matcher with its regex already compiled (by the PromQL parser, which
    /// anchors it the same way and reads Go's literal braces, `a{b}`, as Prometheus does).
    pub fn regex(label: &str, negated: bool, value: &str, regex: Regex) -> Self {
        Matcher {
            label: label.to_string(),
            op: if negated { MatchOp::NotRe } else { MatchOp::Re },
            value: value.to_string(),
            regex: Some(regex),
        }
    }

    /// `label = value`.
    pub fn eq(label: &str, value: &str) -> Self {
        Matcher {
            label: label.to_string(),
            op: MatchOp::Eq,
            value: value.to_string(),
            regex: None,
        }
    }

    /// `label != value`.
    pub fn ne(label: &str, value: &str) -> Self {
        Matcher {
            op: MatchOp::Ne,
            ..Matcher::eq(label, value)
        }
    }

    /// Whether a series passes this matcher.
    pub fn matches(&self, series: &SeriesKey) -> bool {
        self.matches_value(series.label(&self.label).unwrap_or(""))
    }

    /// Whether a label value (`""` for a missing label) passes this matcher.
    pub fn matches_value(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// A conjunction of matchers; the empty selector matches every series.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Every series.
    pub fn all() -> Self {
        Selector::default()
    }

    /// Series of one metric name.
    pub fn metric(name: &str) -> Self {
        Selector {
            matchers: vec![Matcher::eq("__name__", name)],
        }
    }

    /// Adds a matcher.
    pub fn with(mut self, m: Matcher) -> Self {
        self.matchers.push(m);
        self
    }

    /// The metric name an `__name__ = "x"` matcher pins, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.label == "__name__" && m.op == MatchOp::Eq)
            .map(|m| m.value.as_str())
    }

    /// Whether every matcher other than the `__name__ = "x"` one passes.
    pub fn matches_besides_name(&self, series: &SeriesKey) -> bool {
        self.matchers
            .iter()
            .filter(|m| !(m.label == "__name__" && m.op == MatchOp::Eq))
            .all(|m| m.matches(series))
    }

    /// Whether every matcher passes.
    pub fn matches(&self, series: &SeriesKey) -> bool {
        self.matchers.iter().all(|m| m.matches(series))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_follow_prometheus_semantics() {
        let s = SeriesKey::new("DCGM_FI_DEV_GPU_UTIL", [("gpu", "1"), ("Hostname", "h")]);
        assert!(Selector::metric("DCGM_FI_DEV_GPU_UTIL").matches(&s));
        assert!(!Selector::metric("other").matches(&s));
        let re = Matcher::new("__name__", MatchOp::Re, "DCGM_FI_.*").unwrap();
        assert!(re.matches(&s));
        // anchored: a partial match is no match
        assert!(!Matcher::new("gpu", MatchOp::Re, "1|2x")
            .unwrap()
            .matches(&SeriesKey::new("m", [("gpu", "12")])));
        assert!(Matcher::new("gpu", MatchOp::NotRe, "2|3")
            .unwrap()
            .matches(&s));
        assert!(Matcher::new("gpu", MatchOp::Ne, "2").unwrap().matches(&s));
        // a missing label matches the empty string
        assert!(Matcher::eq("pid", "").matches(&s));
        assert!(Matcher::new("x", MatchOp::Re, "(").is_err());
    }
}
