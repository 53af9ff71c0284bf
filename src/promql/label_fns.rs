//! Functions that rewrite labels or order a vector: `label_replace`, `label_join`,
//! `sort`, `sort_desc`, as Prometheus 2.42 evaluates them.

use std::collections::HashSet;

use super::eval::EvalError;
use super::{Labels, VecSample};

/// Sets `dst` to `value`, or removes it when `value` is empty.
fn set(labels: &Labels, dst: &str, value: String) -> Labels {
    if value.is_empty() {
        labels.without(dst)
    } else {
        labels.with(dst, value.into())
    }
}

/// Two samples may not end with the same labels.
fn unique(v: Vec<VecSample>) -> Result<Vec<VecSample>, EvalError> {
    let mut seen = HashSet::new();
    if v.iter().all(|s| seen.insert(s.labels.clone())) {
        Ok(v)
    } else {
        Err(EvalError(
            "vector cannot contain metrics with the same labelset".to_string(),
        ))
    }
}

/// `label_replace(v, dst, replacement, src, regex)`.
pub fn label_replace(
    v: Vec<VecSample>,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Vec<VecSample>, EvalError> {
    let re = regex::Regex::new(&format!("^(?:{regex})$")).map_err(|e| {
        EvalError(format!(
            "invalid regular expression in label_replace(): {e}"
        ))
    })?;
    if !crate::model::labels::valid_label_name(dst) {
        return Err(EvalError(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let out = v
        .into_iter()
        .map(|s| {
            let value = s.labels.get(src).map(|v| v.to_string()).unwrap_or_default();
            let labels = match re.captures(&value) {
                Some(caps) => {
                    let mut expanded = String::new();
                    caps.expand(replacement, &mut expanded);
                    set(&s.labels, dst, expanded)
                }
                None => s.labels,
            };
            VecSample {
                labels,
                value: s.value,
            }
        })
        .collect();
    unique(out)
}

/// `label_join(v, dst, separator, src...)`.
pub fn label_join(
    v: Vec<VecSample>,
    dst: &str,
    separator: &str,
    srcs: &[String],
) -> Result<Vec<VecSample>, EvalError> {
    if !crate::model::labels::valid_label_name(dst) {
        return Err(EvalError(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let out = v
        .into_iter()
        .map(|s| {
            let joined: Vec<String> = srcs
                .iter()
                .map(|l| s.labels.get(l).map(|v| v.to_string()).unwrap_or_default())
                .collect();
            VecSample {
                labels: set(&s.labels, dst, joined.join(separator)),
                value: s.value,
            }
        })
        .collect();
    unique(out)
}

/// `sort` (ascending) and `sort_desc`: NaN last either way.
pub fn sort(mut v: Vec<VecSample>, descending: bool) -> Vec<VecSample> {
    v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if descending => b.value.total_cmp(&a.value),
        _ => a.value.total_cmp(&b.value),
    });
    v
}
