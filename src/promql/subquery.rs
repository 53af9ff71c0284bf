//! Subqueries (`expr[range:step]`): the inner expression evaluated at every step in the
//! range, as Prometheus 2.42 does: steps aligned to multiples of the step from the Unix
//! epoch, the window closed at both ends, `offset` and `@` moving it.

use std::collections::BTreeMap;

use promql_parser::parser::SubqueryExpr;

use super::eval::{offset_ms, EvalError, Evaluator, Matrix, RangeRef, Storage};
use super::{Labels, Value};

/// Most steps one subquery evaluates (a day at a second): more is refused, not computed.
pub const MAX_SUBQUERY_STEPS: i64 = 86_400;

impl<'a, S: Storage + ?Sized> Evaluator<'a, S> {
    pub(super) fn subquery(&self, sq: &SubqueryExpr) -> Result<Matrix<'a>, EvalError> {
        let step = sq
            .step
            .map(|s| s.as_millis() as i64)
            .filter(|s| *s > 0)
            .unwrap_or(self.default_step_ms);
        let end_ms = self.at_ms(&sq.at) - offset_ms(&sq.offset);
        let start_ms = end_ms - sq.range.as_millis() as i64;
        let mut first = start_ms.div_euclid(step) * step;
        if first < start_ms {
            first += step;
        }
        if (end_ms - first) / step > MAX_SUBQUERY_STEPS {
            return Err(EvalError(format!(
                "subquery {sq}: more than {MAX_SUBQUERY_STEPS} steps"
            )));
        }
        let mut series: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut t = first;
        while t <= end_ms {
            match self.at(t).eval(&sq.expr)? {
                Value::Vector(v) => {
                    for s in v {
                        series.entry(s.labels).or_default().push((t, s.value));
                    }
                }
                Value::Scalar(v) => series.entry(Labels::new()).or_default().push((t, v)),
                _ => {
                    return Err(EvalError(format!(
                        "subquery {sq}: the inner expression must be an instant vector or scalar"
                    )))
                }
            }
            t += step;
        }
        Ok(Matrix {
            series: series
                .into_iter()
                .map(|(labels, points)| RangeRef {
                    labels,
                    points: points.into(),
                })
                .collect(),
            start_ms,
            end_ms,
        })
    }
}
