//! Instant evaluation of a checked expression at one time.

use std::collections::{HashMap, HashSet};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{
    AtModifier, BinaryExpr, Expr, LabelModifier, MatrixSelector, Offset, VectorMatchCardinality,
    VectorSelector,
};

use super::{functions, is_stale, Labels, RangeSeries, Value, VecSample, LOOKBACK_MS, NAME};
use crate::model::selector::{Matcher, Selector};
use crate::model::series::Series;

/// A selected series: its key, its points in the range, whether they may hold staleness markers.
pub type SelectedRange<'a> = (&'a Series, &'a [(i64, f64)], bool);

/// Where series come from.
pub trait Storage {
    /// Points of matching series with `start_ms <= t <= end_ms`, borrowed, with whether
    /// the series holds staleness markers.
    fn select_slices<'a>(
        &'a self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SelectedRange<'a>>;
    /// The newest such point of each matching series.
    fn select_last(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(Series, i64, f64)>;
}

/// An evaluation failed (the expression was valid, the data made it impossible).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

pub(super) fn err<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(msg.into()))
}

/// One series of a range vector, its points read in place when it holds no staleness marker.
pub(super) struct RangeRef<'a> {
    pub labels: Labels,
    pub points: std::borrow::Cow<'a, [(i64, f64)]>,
}

/// A range vector with the window it was selected over.
pub(super) struct Matrix<'a> {
    pub series: Vec<RangeRef<'a>>,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Matrix<'_> {
    /// The range vector as a result, its points copied out.
    fn into_value(self) -> Value {
        Value::Matrix(
            self.series
                .into_iter()
                .map(|r| RangeSeries {
                    labels: r.labels,
                    points: r.points.into_owned(),
                })
                .collect(),
        )
    }
}

/// Results of selectors and range functions within one evaluation tick, shared by the rules
/// of a group: rules that repeat a subexpression (one condition at several thresholds, a
/// warning and a critical rule) compute it once. Entries that could see a series written
/// during the tick are dropped when it is written.
#[derive(Default)]
pub struct TickCache {
    /// Expression text → (metric name it reads, when known; its value).
    entries: std::cell::RefCell<HashMap<String, (Option<String>, Value)>>,
}

impl TickCache {
    /// Forgets the entries that read a metric in `written` (or an unknown metric).
    pub fn invalidate(&self, written: &HashSet<&str>) {
        self.entries
            .borrow_mut()
            .retain(|_, (metric, _)| metric.as_deref().is_some_and(|m| !written.contains(m)));
    }
}

/// How many samples one evaluation may read from the store (Prometheus'
/// `--query.max-samples`, per rule evaluation): every sample an instant selector takes and
/// every point a range selector reads counts; results shared from the tick's cache count
/// once, where they were read.
#[derive(Debug)]
pub struct SampleBudget {
    max: u64,
    used: std::cell::Cell<u64>,
}

impl SampleBudget {
    /// A budget of `max` samples; none for 0 (no limit), as `rules.max_samples` says it.
    pub fn limit(max: u64) -> Option<Self> {
        (max > 0).then(|| SampleBudget {
            max,
            used: std::cell::Cell::new(0),
        })
    }

    /// Counts `n` samples read; an error once more than the budget were.
    fn spend(&self, n: usize) -> Result<(), EvalError> {
        let used = self.used.get().saturating_add(n as u64);
        self.used.set(used);
        if used > self.max {
            return err(format!(
                "query processing would load too many samples into memory in query execution \
                 (more than {}: rules.max_samples)",
                self.max
            ));
        }
        Ok(())
    }
}

/// Evaluates expressions at `t_ms` over `storage`.
pub struct Evaluator<'a, S: Storage + ?Sized> {
    pub storage: &'a S,
    pub t_ms: i64,
    /// Shared results of this tick, when evaluating several rules at one time.
    pub cache: Option<&'a TickCache>,
    /// The query's own time, which `@ start()` and `@ end()` name (a subquery evaluates
    /// its inner expression at other times).
    pub(super) query_ms: i64,
    /// The step of a subquery that names none (`x[5m:]`): Prometheus uses the rule
    /// group's interval, or a minute for a query.
    pub(super) default_step_ms: i64,
    /// The samples it may read (no limit when absent).
    budget: Option<&'a SampleBudget>,
}

/// A subquery's step when neither it nor the caller names one.
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

impl<'a, S: Storage + ?Sized> Evaluator<'a, S> {
    /// An evaluator of instant queries at `t_ms`.
    pub fn new(storage: &'a S, t_ms: i64) -> Self {
        Evaluator {
            storage,
            t_ms,
            cache: None,
            query_ms: t_ms,
            default_step_ms: DEFAULT_SUBQUERY_STEP_MS,
            budget: None,
        }
    }

    /// Limits the samples it reads (a subquery's steps share the budget).
    pub fn with_budget(mut self, budget: Option<&'a SampleBudget>) -> Self {
        self.budget = budget;
        self
    }

    fn spend(&self, n: usize) -> Result<(), EvalError> {
        self.budget.map_or(Ok(()), |b| b.spend(n))
    }

    /// Shares selector and range-function results with other rules of the same tick.
    pub fn with_cache(mut self, cache: Option<&'a TickCache>) -> Self {
        self.cache = cache;
        self
    }

    /// The step of subqueries that name none (a rule group's interval).
    pub fn with_default_step(mut self, step_ms: i64) -> Self {
        if step_ms > 0 {
            self.default_step_ms = step_ms;
        }
        self
    }

    /// The same query evaluated at another time (a subquery's step).
    pub(super) fn at(&self, t_ms: i64) -> Self {
        Evaluator {
            storage: self.storage,
            t_ms,
            cache: None,
            query_ms: self.query_ms,
            default_step_ms: self.default_step_ms,
            budget: self.budget,
        }
    }

    /// The time a selector or subquery reads at: its `@`, else the evaluation time.
    pub(super) fn at_ms(&self, at: &Option<AtModifier>) -> i64 {
        match at {
            None => self.t_ms,
            Some(AtModifier::Start | AtModifier::End) => self.query_ms,
            Some(AtModifier::At(t)) => match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_millis() as i64,
                Err(e) => -(e.duration().as_millis() as i64),
            },
        }
    }
}

/// Converts a parsed selector into the window store's matchers.
pub(crate) fn selector_of(vs: &VectorSelector) -> Selector {
    let mut sel = Selector::default();
    if let Some(name) = &vs.name {
        sel = sel.with(Matcher::eq(NAME, name));
    }
    for m in &vs.matchers.matchers {
        // The parser has compiled each regex already, fully anchored as Prometheus does
        // (`^(?:re)$`): compiling it again took 15 % of the `config` fuzz target's time.
        let matcher = match &m.op {
            PMatchOp::Equal => Matcher::eq(&m.name, &m.value),
            PMatchOp::NotEqual => Matcher::ne(&m.name, &m.value),
            PMatchOp::Re(re) => Matcher::regex(&m.name, false, &m.value, re.clone()),
            PMatchOp::NotRe(re) => Matcher::regex(&m.name, true, &m.value, re.clone()),
        };
        sel = sel.with(matcher);
    }
    sel
}

pub(super) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

impl<'a, S: Storage + ?Sized> Evaluator<'a, S> {
    /// Evaluates an expression.
    pub fn eval(&self, e: &Expr) -> Result<Value, EvalError> {
        let value = self.eval_node(e)?;
        // Dropping the metric name may leave two samples with one label set: an error in
        // Prometheus. Only selectors that pin no name can make one.
        if let (Value::Vector(v), Expr::Call(_) | Expr::Unary(_) | Expr::Binary(_)) = (&value, e) {
            if v.len() > 1 && reads_unnamed(e) {
                let mut seen = HashSet::with_capacity(v.len());
                if !v.iter().all(|s| seen.insert(&s.labels)) {
                    return err("vector cannot contain metrics with the same labelset");
                }
            }
        }
        Ok(value)
    }

    fn eval_node(&self, e: &Expr) -> Result<Value, EvalError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| VecSample {
                            labels: s.labels.without_name(),
                            value: -s.value,
                        })
                        .collect(),
                )),
                _ => err("unary minus needs a scalar or an instant vector"),
            },
            Expr::VectorSelector(vs) => self.cached(e, vs.name.as_deref(), || {
                Ok(Value::Vector(self.instant(vs)?))
            }),
            Expr::MatrixSelector(ms) => Ok(self.range(ms)?.into_value()),
            Expr::Call(c) => match c.args.args.iter().find_map(|a| match a.as_ref() {
                Expr::MatrixSelector(ms) => Some(ms),
                _ => None,
            }) {
                // Range functions are the costly leaves: cache them.
                Some(ms) => self.cached(e, ms.vs.name.as_deref(), || functions::call(self, c)),
                None => functions::call(self, c),
            },
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Binary(b) => self.binary(b),
            Expr::Subquery(sq) => Ok(self.subquery(sq)?.into_value()),
            Expr::Extension(_) => err("not supported"),
        }
    }

    /// `compute`, or its result from earlier in this tick.
    fn cached(
        &self,
        e: &Expr,
        metric: Option<&str>,
        compute: impl FnOnce() -> Result<Value, EvalError>,
    ) -> Result<Value, EvalError> {
        let Some(cache) = self.cache else {
            return compute();
        };
        let key = e.to_string();
        if let Some((_, v)) = cache.entries.borrow().get(&key) {
            return Ok(v.clone());
        }
        let v = compute()?;
        cache
            .entries
            .borrow_mut()
            .insert(key, (metric.map(str::to_string), v.clone()));
        Ok(v)
    }

    pub(super) fn vector(&self, e: &Expr) -> Result<Vec<VecSample>, EvalError> {
        match self.eval(e)? {
            Value::Vector(v) => Ok(v),
            _ => err(format!("expected an instant vector: {e}")),
        }
    }

    pub(super) fn scalar(&self, e: &Expr) -> Result<f64, EvalError> {
        match self.eval(e)? {
            Value::Scalar(v) => Ok(v),
            _ => err(format!("expected a scalar: {e}")),
        }
    }

    pub(super) fn matrix(&self, e: &Expr) -> Result<Matrix<'a>, EvalError> {
        match e {
            Expr::MatrixSelector(ms) => self.range(ms),
            Expr::Subquery(sq) => self.subquery(sq),
            Expr::Paren(p) => self.matrix(&p.expr),
            _ => err(format!("expected a range vector selector: {e}")),
        }
    }

    /// Newest sample in `[t - 5m, t]` (inclusive, as Prometheus 2.x) of each matching series; a staleness marker
    /// hides the series.
    fn instant(&self, vs: &VectorSelector) -> Result<Vec<VecSample>, EvalError> {
        Ok(self
            .instant_points(vs)?
            .into_iter()
            .map(|(labels, _, value)| VecSample { labels, value })
            .collect())
    }

    /// The selected samples with their own timestamps (what `timestamp()` reports).
    pub(super) fn instant_points(
        &self,
        vs: &VectorSelector,
    ) -> Result<Vec<(Labels, i64, f64)>, EvalError> {
        let t = self.at_ms(&vs.at) - offset_ms(&vs.offset);
        let found = self
            .storage
            .select_last(&selector_of(vs), t - LOOKBACK_MS, t);
        self.spend(found.len())?;
        Ok(found
            .iter()
            .filter(|(_, _, v)| !is_stale(*v))
            .map(|(series, t, v)| (series.label_set(), *t, *v))
            .collect())
    }

    /// Samples in `[t - range, t]` (Prometheus 2.x closed window), staleness markers removed.
    fn range(&self, ms: &MatrixSelector) -> Result<Matrix<'a>, EvalError> {
        let end_ms = self.at_ms(&ms.vs.at) - offset_ms(&ms.vs.offset);
        let start_ms = end_ms - ms.range.as_millis() as i64;
        let storage: &'a S = self.storage;
        let selected = storage.select_slices(&selector_of(&ms.vs), start_ms, end_ms);
        self.spend(selected.iter().map(|(_, points, _)| points.len()).sum())?;
        let series = selected
            .into_iter()
            .filter_map(|(series, points, may_be_stale)| {
                // Read in place unless a staleness marker has to be taken out.
                let points: std::borrow::Cow<'a, [(i64, f64)]> =
                    if may_be_stale && points.iter().any(|p| is_stale(p.1)) {
                        points
                            .iter()
                            .copied()
                            .filter(|p| !is_stale(p.1))
                            .collect::<Vec<_>>()
                            .into()
                    } else {
                        points.into()
                    };
                (!points.is_empty()).then(|| RangeRef {
                    labels: series.label_set(),
                    points,
                })
            })
            .collect();
        Ok(Matrix {
            series,
            start_ms,
            end_ms,
        })
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Value, EvalError> {
        let op = b.op.to_string();
        let return_bool = b.return_bool();
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                if is_comparison(&op) {
                    Ok(Value::Scalar(if compare(&op, l, r) { 1.0 } else { 0.0 }))
                } else {
                    Ok(Value::Scalar(arith(&op, l, r)))
                }
            }
            (Value::Vector(v), Value::Scalar(s)) => {
                Ok(Value::Vector(vector_scalar(&op, v, s, false, return_bool)))
            }
            (Value::Scalar(s), Value::Vector(v)) => {
                Ok(Value::Vector(vector_scalar(&op, v, s, true, return_bool)))
            }
            (Value::Vector(l), Value::Vector(r)) => Ok(Value::Vector(vector_vector(b, &op, l, r)?)),
            _ => err(format!("operator `{op}` needs scalars or instant vectors")),
        }
    }
}

/// Whether a selector in `e` pins no metric name (`{__name__=~"a|b"}`).
fn reads_unnamed(e: &Expr) -> bool {
    match e {
        Expr::VectorSelector(vs) => vs.name.is_none(),
        Expr::MatrixSelector(ms) => ms.vs.name.is_none(),
        Expr::Aggregate(a) => reads_unnamed(&a.expr),
        Expr::Unary(u) => reads_unnamed(&u.expr),
        Expr::Binary(b) => reads_unnamed(&b.lhs) || reads_unnamed(&b.rhs),
        Expr::Paren(p) => reads_unnamed(&p.expr),
        Expr::Subquery(s) => reads_unnamed(&s.expr),
        Expr::Call(c) => c.args.args.iter().any(|a| reads_unnamed(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => false,
    }
}

/// Population variance by Welford's method, as Prometheus 2.42 computes it.
pub(super) fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut aux) = (0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        aux += delta * (v - mean);
    }
    aux / count
}

/// Whether an operator's result drops the metric name (arithmetic, not `atan2`).
fn drops_name(op: &str, return_bool: bool) -> bool {
    matches!(op, "+" | "-" | "*" | "/" | "%" | "^") || (is_comparison(op) && return_bool)
}

/// Prometheus' quantile: linear interpolation between the closest ranks.
pub(super) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

fn is_set(op: &str) -> bool {
    matches!(op, "and" | "or" | "unless")
}

fn compare(op: &str, l: f64, r: f64) -> bool {
    match op {
        "==" => l == r,
        "!=" => l != r,
        ">" => l > r,
        "<" => l < r,
        ">=" => l >= r,
        "<=" => l <= r,
        _ => false,
    }
}

fn arith(op: &str, l: f64, r: f64) -> f64 {
    match op {
        "+" => l + r,
        "-" => l - r,
        "*" => l * r,
        "/" => l / r,
        "%" => l % r,
        "^" => l.powf(r),
        "atan2" => l.atan2(r),
        _ => f64::NAN,
    }
}

fn vector_scalar(
    op: &str,
    v: Vec<VecSample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Vec<VecSample> {
    let mut out = Vec::with_capacity(v.len());
    for sample in v {
        let (l, r) = if scalar_left {
            (s, sample.value)
        } else {
            (sample.value, s)
        };
        if is_comparison(op) {
            let keep = compare(op, l, r);
            if return_bool {
                out.push(VecSample {
                    labels: sample.labels.without_name(),
                    value: if keep { 1.0 } else { 0.0 },
                });
            } else if keep {
                out.push(sample);
            }
        } else {
            out.push(VecSample {
                labels: if drops_name(op, return_bool) {
                    sample.labels.without_name()
                } else {
                    sample.labels
                },
                value: arith(op, l, r),
            });
        }
    }
    out
}

/// The labels two sides are matched on, as a 64-bit hash (Prometheus matches on label
/// hashes too): no allocation per sample.
type Signature = u64;

fn signature(l: &Labels, matching: Option<&LabelModifier>) -> Signature {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let keep = |k: &str| match matching {
        Some(LabelModifier::Include(on)) => on.labels.iter().any(|o| o == k),
        Some(LabelModifier::Exclude(ignoring)) => {
            k != NAME && !ignoring.labels.iter().any(|i| i == k)
        }
        None => k != NAME,
    };
    for (k, v) in l.iter().filter(|(k, _)| keep(k)) {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

fn vector_vector(
    b: &BinaryExpr,
    op: &str,
    lhs: Vec<VecSample>,
    rhs: Vec<VecSample>,
) -> Result<Vec<VecSample>, EvalError> {
    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
    let card = b
        .modifier
        .as_ref()
        .map(|m| m.card.clone())
        .unwrap_or(VectorMatchCardinality::OneToOne);
    let return_bool = b.return_bool();

    if is_set(op) {
        let rhs_sigs: HashSet<Signature> =
            rhs.iter().map(|s| signature(&s.labels, matching)).collect();
        return Ok(match op {
            "and" => lhs
                .into_iter()
                .filter(|s| rhs_sigs.contains(&signature(&s.labels, matching)))
                .collect(),
            "unless" => lhs
                .into_iter()
                .filter(|s| !rhs_sigs.contains(&signature(&s.labels, matching)))
                .collect(),
            _ => {
                let lhs_sigs: HashSet<Signature> =
                    lhs.iter().map(|s| signature(&s.labels, matching)).collect();
                let mut out = lhs;
                out.extend(
                    rhs.into_iter()
                        .filter(|s| !lhs_sigs.contains(&signature(&s.labels, matching))),
                );
                out
            }
        });
    }

    // The "one" side must be unique per signature; with group_right the sides swap.
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let include: Vec<String> = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
    let mut one_by_sig: HashMap<Signature, &VecSample> = HashMap::new();
    for s in &one {
        let sig = signature(&s.labels, matching);
        if one_by_sig.insert(sig, s).is_some() {
            return err(format!(
                "found duplicate series for the match group {:?} on the {} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                s.labels,
                if swapped { "left" } else { "right" }
            ));
        }
    }
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut matched_sigs: HashSet<Signature> = HashSet::new();
    let mut seen_results: HashSet<Labels> = HashSet::new();
    let mut out = Vec::new();
    for m in &many {
        let sig = signature(&m.labels, matching);
        let Some(o) = one_by_sig.get(&sig) else {
            continue;
        };
        let (vl, vr) = if swapped {
            (o.value, m.value)
        } else {
            (m.value, o.value)
        };
        let (mut value, keep) = if is_comparison(op) {
            (vl, compare(op, vl, vr))
        } else {
            (arith(op, vl, vr), true)
        };
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        if one_to_one && !matched_sigs.insert(sig) {
            return err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
        }
        let mut labels = if drops_name(op, return_bool) {
            m.labels.without_name()
        } else {
            m.labels.clone()
        };
        if one_to_one {
            match matching {
                Some(LabelModifier::Include(on)) => {
                    labels = labels.filter(|k, _| on.labels.iter().any(|o| o == k))
                }
                Some(LabelModifier::Exclude(ignoring)) => {
                    labels = labels.filter(|k, _| !ignoring.labels.iter().any(|i| i == k))
                }
                None => {}
            }
        }
        for ln in &include {
            labels = match o.labels.get(ln.as_str()) {
                Some(v) if !v.is_empty() => labels.with(ln, v.clone()),
                _ => labels.without(ln),
            };
        }
        if !one_to_one && !seen_results.insert(labels.clone()) {
            return err("multiple matches for labels: grouping labels must ensure unique matches");
        }
        out.push(VecSample { labels, value });
    }
    Ok(out)
}
