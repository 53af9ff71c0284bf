//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, ...) with `by` / `without`,
//! as Prometheus 2.42 computes them.

use std::collections::BTreeMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::eval::{err, quantile, variance, EvalError, Evaluator, Storage};
use super::{functions, Labels, Value, VecSample, NAME};

impl<S: Storage + ?Sized> Evaluator<'_, S> {
    pub(super) fn aggregate(&self, a: &AggregateExpr) -> Result<Value, EvalError> {
        let ev = self;
        let op = a.op.to_string();
        let param = match &a.param {
            Some(p) if op != "count_values" => Some(ev.scalar(p)?),
            _ => None,
        };
        let mut input = ev.vector(&a.expr)?;
        // count_values: each sample gets its value as a label, which groups it.
        let value_label = match (&a.param, op.as_str()) {
            (Some(p), "count_values") => {
                let Value::String(label) = ev.eval(p)? else {
                    return err("count_values needs a label name");
                };
                if !crate::model::labels::valid_label_name(&label) {
                    return err(format!("invalid label name {label:?}"));
                }
                for s in &mut input {
                    s.labels = s.labels.with(&label, go_float_text(s.value).into());
                }
                Some(label)
            }
            _ => None,
        };
        // Group key and output labels.
        let key_of = |l: &Labels| -> Labels {
            match &a.modifier {
                Some(LabelModifier::Include(by)) => l
                    .iter()
                    .filter(|(k, _)| {
                        by.labels.iter().any(|b| b.as_str() == &***k)
                            || value_label.as_deref() == Some(&***k)
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                Some(LabelModifier::Exclude(without)) => l
                    .iter()
                    .filter(|(k, _)| {
                        &***k != NAME && !without.labels.iter().any(|w| w.as_str() == &***k)
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                None => match &value_label {
                    Some(v) => l.filter(|k, _| k == v),
                    None => Labels::new(),
                },
            }
        };
        let mut groups: BTreeMap<Labels, Vec<VecSample>> = BTreeMap::new();
        for s in input {
            groups.entry(key_of(&s.labels)).or_default().push(s);
        }
        let mut out = Vec::new();
        for (key, members) in groups {
            let values: Vec<f64> = members.iter().map(|s| s.value).collect();
            let one = |value: f64| VecSample {
                labels: key.clone(),
                value,
            };
            match op.as_str() {
                "sum" => out.push(one(values.iter().sum())),
                "avg" => out.push(one(functions::mean(values.iter().copied()))),
                "count" | "count_values" => out.push(one(values.len() as f64)),
                "group" => out.push(one(1.0)),
                "min" => out.push(one(values.iter().skip(1).fold(values[0], |m, v| {
                    if m > *v || m.is_nan() {
                        *v
                    } else {
                        m
                    }
                }))),
                "max" => out.push(one(values.iter().skip(1).fold(values[0], |m, v| {
                    if m < *v || m.is_nan() {
                        *v
                    } else {
                        m
                    }
                }))),
                "stddev" => out.push(one(variance(values.iter().copied()).sqrt())),
                "stdvar" => out.push(one(variance(values.iter().copied()))),
                "quantile" => out.push(one(quantile(param.unwrap_or(f64::NAN), values))),
                "topk" | "bottomk" => {
                    let k = param.unwrap_or(0.0);
                    if k < 1.0 {
                        continue;
                    }
                    let mut members = members;
                    let top = op == "topk";
                    members.sort_by(|x, y| {
                        let (x, y) = (x.value, y.value);
                        // NaN sorts last either way.
                        match (x.is_nan(), y.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if top => y.total_cmp(&x),
                            _ => x.total_cmp(&y),
                        }
                    });
                    out.extend(members.into_iter().take(k as usize));
                }
                other => return err(format!("aggregation `{other}` is not supported")),
            }
        }
        Ok(Value::Vector(out))
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an exponent.
fn go_float_text(v: f64) -> String {
    match v {
        f64::INFINITY => "+Inf".to_string(),
        f64::NEG_INFINITY => "-Inf".to_string(),
        _ => format!("{v}"),
    }
}
