//! The supported PromQL functions, with Prometheus 2.x semantics.

use promql_parser::parser::{Call, Expr};

use super::eval::{quantile, EvalError, Evaluator, Matrix, Storage};
use super::{elementwise, label_fns, Labels, Value, VecSample, NAME};

/// Evaluates a function call.
pub(super) fn call<S: Storage + ?Sized>(
    ev: &Evaluator<'_, S>,
    c: &Call,
) -> Result<Value, EvalError> {
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    let name = c.func.name;
    let string = |i: usize| -> Result<String, EvalError> {
        match ev.eval(args[i])? {
            Value::String(s) => Ok(s),
            _ => Err(EvalError(format!(
                "{name}(): argument {} must be a string",
                i + 1
            ))),
        }
    };
    let out = match name {
        "time" => return Ok(Value::Scalar(ev.t_ms as f64 / 1000.0)),
        "pi" => return Ok(Value::Scalar(std::f64::consts::PI)),
        "scalar" => {
            let v = ev.vector(args[0])?;
            return Ok(Value::Scalar(match v.as_slice() {
                [one] => one.value,
                _ => f64::NAN,
            }));
        }
        "vector" => vec![VecSample {
            labels: Labels::new(),
            value: ev.scalar(args[0])?,
        }],
        "sort" | "sort_desc" => label_fns::sort(ev.vector(args[0])?, name == "sort_desc"),
        "label_replace" => label_fns::label_replace(
            ev.vector(args[0])?,
            &string(1)?,
            &string(2)?,
            &string(3)?,
            &string(4)?,
        )?,
        "label_join" => {
            let srcs = (3..args.len()).map(string).collect::<Result<Vec<_>, _>>()?;
            label_fns::label_join(ev.vector(args[0])?, &string(1)?, &string(2)?, &srcs)?
        }
        _ if elementwise::NAMES.contains(&name) => {
            let vector = match args.first() {
                Some(a) => ev.vector(a)?,
                // The calendar functions default to the evaluation time.
                None => vec![VecSample {
                    labels: Labels::new(),
                    value: ev.t_ms as f64 / 1000.0,
                }],
            };
            let params = args
                .iter()
                .skip(1)
                .map(|a| ev.scalar(a))
                .collect::<Result<Vec<_>, _>>()?;
            elementwise::apply(name, vector, &params)
        }
        "changes" => over(ev.matrix(args[0])?, name, |pts, _| {
            Some(
                pts.windows(2)
                    .filter(|w| w[0].1 != w[1].1 && !(w[0].1.is_nan() && w[1].1.is_nan()))
                    .count() as f64,
            )
        }),
        "resets" => over(ev.matrix(args[0])?, name, |pts, _| {
            Some(pts.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64)
        }),
        "present_over_time" => over(ev.matrix(args[0])?, name, |_, _| Some(1.0)),
        "absent_over_time" => {
            let m = ev.matrix(args[0])?;
            if !m.series.is_empty() {
                Vec::new()
            } else {
                let selector = match strip_parens(args[0]) {
                    Expr::MatrixSelector(ms) => Expr::VectorSelector(ms.vs.clone()),
                    _ => Expr::NumberLiteral(promql_parser::parser::NumberLiteral { val: 0.0 }),
                };
                absent(Vec::new(), &selector)
            }
        }
        "holt_winters" | "double_exponential_smoothing" => {
            let (sf, tf) = (ev.scalar(args[1])?, ev.scalar(args[2])?);
            if !(sf > 0.0 && sf < 1.0) {
                return Err(EvalError(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf}"
                )));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return Err(EvalError(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf}"
                )));
            }
            over(ev.matrix(args[0])?, name, |pts, _| {
                holt_winters(pts, sf, tf)
            })
        }
        "timestamp" => match strip_parens(args[0]) {
            // A selector's samples keep their own timestamps; anything computed is "now".
            Expr::VectorSelector(vs) => ev
                .instant_points(vs)?
                .into_iter()
                .map(|(labels, t, _)| VecSample {
                    labels: labels.without_name(),
                    value: t as f64 / 1000.0,
                })
                .collect(),
            other => map_vector(ev.vector(other)?, |_| ev.t_ms as f64 / 1000.0),
        },
        "abs" => map_vector(ev.vector(args[0])?, f64::abs),
        "clamp_min" => {
            let min = ev.scalar(args[1])?;
            map_vector(ev.vector(args[0])?, |v| go_max(v, min))
        }
        "clamp_max" => {
            let max = ev.scalar(args[1])?;
            map_vector(ev.vector(args[0])?, |v| go_min(v, max))
        }
        "absent" => absent(ev.vector(args[0])?, args[0]),
        "histogram_quantile" => {
            let q = ev.scalar(args[0])?;
            histogram_quantile(q, ev.vector(args[1])?)
        }
        "rate" => over(ev.matrix(args[0])?, name, |pts, m| {
            extrapolated_rate(pts, m, true, true)
        }),
        "increase" => over(ev.matrix(args[0])?, name, |pts, m| {
            extrapolated_rate(pts, m, true, false)
        }),
        "delta" => over(ev.matrix(args[0])?, name, |pts, m| {
            extrapolated_rate(pts, m, false, false)
        }),
        "irate" => over(ev.matrix(args[0])?, name, |pts, _| instant_delta(pts, true)),
        "idelta" => over(ev.matrix(args[0])?, name, |pts, _| {
            instant_delta(pts, false)
        }),
        "deriv" => over(ev.matrix(args[0])?, name, |pts, _| {
            (pts.len() >= 2).then(|| linear_regression(pts, pts[0].0).0)
        }),
        "predict_linear" => {
            let duration_s = ev.scalar(args[1])?;
            let t = ev.t_ms;
            over(ev.matrix(args[0])?, name, |pts, _| {
                (pts.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(pts, t);
                    slope * duration_s + intercept
                })
            })
        }
        "avg_over_time" => over(ev.matrix(args[0])?, name, |pts, _| {
            Some(mean(pts.iter().map(|p| p.1)))
        }),
        "min_over_time" => over(ev.matrix(args[0])?, name, |pts, _| {
            Some(
                pts.iter()
                    .skip(1)
                    .fold(pts[0].1, |m, p| if p.1 < m || m.is_nan() { p.1 } else { m }),
            )
        }),
        "max_over_time" => over(ev.matrix(args[0])?, name, |pts, _| {
            Some(
                pts.iter()
                    .skip(1)
                    .fold(pts[0].1, |m, p| if p.1 > m || m.is_nan() { p.1 } else { m }),
            )
        }),
        "sum_over_time" => over(ev.matrix(args[0])?, name, |pts, _| {
            Some(pts.iter().map(|p| p.1).sum())
        }),
        "count_over_time" => over(ev.matrix(args[0])?, name, |pts, _| Some(pts.len() as f64)),
        "last_over_time" => over(ev.matrix(args[0])?, name, |pts, _| pts.last().map(|p| p.1)),
        "stddev_over_time" => over(ev.matrix(args[0])?, name, |pts, _| {
            Some(variance(pts).sqrt())
        }),
        "stdvar_over_time" => over(ev.matrix(args[0])?, name, |pts, _| Some(variance(pts))),
        "quantile_over_time" => {
            let q = ev.scalar(args[0])?;
            over(ev.matrix(args[1])?, name, |pts, _| {
                Some(quantile(q, pts.iter().map(|p| p.1).collect()))
            })
        }
        other => return Err(EvalError(format!("function `{other}` is not supported"))),
    };
    Ok(Value::Vector(out))
}

/// Prometheus' `holt_winters`: double exponential smoothing, the last smoothed value.
fn holt_winters(pts: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, pts[0].1);
    let mut b = pts[1].1 - pts[0].1;
    for (i, p) in pts.iter().enumerate().skip(1) {
        // Trend: from the second smoothed value on.
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        s0 = s1;
        s1 = sf * p.1 + (1.0 - sf) * (s1 + b);
    }
    Some(s1)
}

fn strip_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip_parens(&p.expr),
        other => other,
    }
}

fn map_vector(v: Vec<VecSample>, f: impl Fn(f64) -> f64) -> Vec<VecSample> {
    v.into_iter()
        .map(|s| VecSample {
            labels: s.labels.without_name(),
            value: f(s.value),
        })
        .collect()
}

/// Applies a range function to each series; `last_over_time` keeps the metric name.
fn over(
    m: Matrix,
    name: &str,
    f: impl Fn(&[(i64, f64)], &Matrix) -> Option<f64>,
) -> Vec<VecSample> {
    let mut out = Vec::new();
    for s in &m.series {
        if let Some(value) = f(&s.points, &m) {
            let labels = if name == "last_over_time" {
                s.labels.clone()
            } else {
                s.labels.without_name()
            };
            out.push(VecSample { labels, value });
        }
    }
    out
}

fn variance(pts: &[(i64, f64)]) -> f64 {
    super::eval::variance(pts.iter().map(|p| p.1))
}

/// Prometheus' running mean: an infinite mean stays put rather than become NaN by
/// `Inf - Inf`.
pub(super) fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut count) = (0.0_f64, 0.0);
    for v in values {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / count - mean / count;
    }
    mean
}

/// Go's `math.Max`: NaN wins.
pub(super) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
pub(super) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// `rate`, `increase` and `delta`, extrapolated to the window edges as Prometheus does.
fn extrapolated_rate(
    pts: &[(i64, f64)],
    m: &Matrix,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (first, last) = (pts[0], pts[pts.len() - 1]);
    let mut result = last.1 - first.1;
    if is_counter {
        let mut prev = first.1;
        for p in &pts[1..] {
            if p.1 < prev {
                result += prev;
            }
            prev = p.1;
        }
    }
    let range_s = (m.end_ms - m.start_ms) as f64 / 1000.0;
    let mut to_start = (first.0 - m.start_ms) as f64 / 1000.0;
    let to_end = (m.end_ms - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg_between = sampled / (pts.len() - 1) as f64;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_between / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_between / 2.0
    };
    result *= interval / sampled;
    if is_rate {
        result /= range_s;
    }
    Some(result)
}

/// `irate` and `idelta`: the last two samples.
fn instant_delta(pts: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (prev, last) = (pts[pts.len() - 2], pts[pts.len() - 1]);
    let mut result = if is_rate && last.1 < prev.1 {
        last.1
    } else {
        last.1 - prev.1
    };
    let interval_s = (last.0 - prev.0) as f64 / 1000.0;
    if interval_s == 0.0 {
        return None;
    }
    if is_rate {
        result /= interval_s;
    }
    Some(result)
}

/// Least-squares slope (per second) and intercept at `intercept_ms`.
fn linear_regression(pts: &[(i64, f64)], intercept_ms: i64) -> (f64, f64) {
    let n = pts.len() as f64;
    let (mut sx, mut sy, mut sxy, mut sx2) = (0.0, 0.0, 0.0, 0.0);
    let const_y = pts.iter().all(|p| p.1 == pts[0].1);
    for &(t, v) in pts {
        let x = (t - intercept_ms) as f64 / 1000.0;
        sx += x;
        sy += v;
        sxy += x * v;
        sx2 += x * x;
    }
    if const_y && pts[0].1.is_finite() {
        return (0.0, pts[0].1);
    }
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

/// `absent(v)`: 1 with the selector's equality labels when `v` is empty.
fn absent(v: Vec<VecSample>, arg: &Expr) -> Vec<VecSample> {
    if !v.is_empty() {
        return Vec::new();
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Expr::VectorSelector(vs) = arg {
        let mut seen: Vec<&str> = Vec::new();
        for m in &vs.matchers.matchers {
            if m.name == NAME {
                continue;
            }
            if seen.contains(&m.name.as_str()) {
                pairs.retain(|(k, _)| *k != m.name);
                continue;
            }
            seen.push(&m.name);
            if matches!(m.op, promql_parser::label::MatchOp::Equal) {
                pairs.push((&m.name, &m.value));
            }
        }
    }
    vec![VecSample {
        labels: Labels::from_pairs(pairs),
        value: 1.0,
    }]
}

/// `histogram_quantile(q, buckets)` over classic `le` buckets.
fn histogram_quantile(q: f64, v: Vec<VecSample>) -> Vec<VecSample> {
    let mut groups: std::collections::BTreeMap<Labels, Vec<(f64, f64)>> = Default::default();
    for s in v {
        let Some(le) = s.labels.get("le").and_then(|le| parse_le(le)) else {
            continue;
        };
        // Grouped with the metric name (two histograms may differ only by it; their
        // results then collide, an error, as in Prometheus).
        groups
            .entry(s.labels.without("le"))
            .or_default()
            .push((le, s.value));
    }
    groups
        .into_iter()
        .map(|(labels, buckets)| VecSample {
            labels: labels.without_name(),
            value: bucket_quantile(q, buckets),
        })
        .collect()
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        _ => s.parse().ok(),
    }
}

fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if q.is_nan() {
        return f64::NAN;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
        return f64::NAN;
    }
    // One bucket per bound (`le="0.1"` and `le="1e-1"` are the same bucket).
    buckets.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    if buckets.len() < 2 {
        return f64::NAN;
    }
    // Counts must not decrease.
    for i in 1..buckets.len() {
        if buckets[i].1 < buckets[i - 1].1 {
            buckets[i].1 = buckets[i - 1].1;
        }
    }
    let total = buckets[buckets.len() - 1].1;
    if total == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * total;
    let b = buckets
        .iter()
        .position(|bk| bk.1 >= rank)
        .unwrap_or(buckets.len() - 1);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (start, mut count) = if b > 0 {
        rank -= buckets[b - 1].1;
        (buckets[b - 1].0, buckets[b].1 - buckets[b - 1].1)
    } else {
        (0.0, buckets[0].1)
    };
    if count == 0.0 {
        count = 1.0;
    }
    start + (buckets[b].0 - start) * (rank / count)
}
