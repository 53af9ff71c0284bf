//! PromQL over the window store: expressions are parsed with `promql-parser`, checked
//! against the supported subset at load time (anything else is refused with a message that
//! names it, never evaluated wrongly), and evaluated at an instant with Prometheus 2.x
//! semantics (5-minute lookback, staleness markers, closed range windows).

mod aggregate;
mod elementwise;
mod eval;
mod functions;
mod label_fns;
mod subquery;

pub use elementwise::{civil_from_days, days_from_civil};

use promql_parser::parser::{self, Expr};

pub use eval::{EvalError, Evaluator, SampleBudget, SelectedRange, Storage, TickCache};

/// Label set of a result series, `__name__` included when kept (shared, immutable).
pub use crate::model::labels::Labels;

/// Metric-name label.
pub const NAME: &str = "__name__";
/// How far back an instant selector looks for a sample (Prometheus' default).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;
pub use crate::model::series::{is_stale, stale_nan, STALE_NAN_BITS};

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VecSample {
    pub labels: Labels,
    pub value: f64,
}

/// One series of a range vector.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    /// (timestamp ms, value), oldest first, staleness markers removed.
    pub points: Vec<(i64, f64)>,
}

/// The value of an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<VecSample>),
    Matrix(Vec<RangeSeries>),
    String(String),
}

/// Functions Pulse evaluates besides the element-wise ones (`elementwise::NAMES`).
pub const SUPPORTED_FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "avg_over_time",
    "changes",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "histogram_quantile",
    "holt_winters",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "max_over_time",
    "min_over_time",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rate",
    "resets",
    "scalar",
    "sort",
    "sort_desc",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "time",
    "timestamp",
    "vector",
];

/// Aggregation operators Pulse evaluates.
pub const SUPPORTED_AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "topk",
    "bottomk",
    "quantile",
    "stddev",
    "stdvar",
    "group",
    "count_values",
];

/// A parsed expression Pulse can evaluate.
#[derive(Debug, Clone)]
pub struct Query {
    pub expr: Expr,
    pub text: String,
}

impl Query {
    /// Every series selector in the expression (those of range selectors included).
    pub fn selectors(&self) -> Vec<crate::model::selector::Selector> {
        fn walk(e: &Expr, out: &mut Vec<crate::model::selector::Selector>) {
            match e {
                Expr::Aggregate(a) => {
                    walk(&a.expr, out);
                    if let Some(p) = &a.param {
                        walk(p, out);
                    }
                }
                Expr::Unary(u) => walk(&u.expr, out),
                Expr::Binary(b) => {
                    walk(&b.lhs, out);
                    walk(&b.rhs, out);
                }
                Expr::Paren(p) => walk(&p.expr, out),
                Expr::Subquery(s) => walk(&s.expr, out),
                Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
                Expr::VectorSelector(vs) => out.push(eval::selector_of(vs)),
                Expr::MatrixSelector(ms) => out.push(eval::selector_of(&ms.vs)),
                Expr::Call(c) => {
                    for a in &c.args.args {
                        walk(a, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.expr, &mut out);
        out
    }
}

/// The most memory one label matcher's regex may take once compiled. The regex crate's
/// own limit is 10 MiB, and promql-parser compiles a regex that fails twice (the second
/// time with Go's literal braces escaped): a config file's selector with huge counted
/// repetitions (found by the `config` fuzz target) took 1.15 s to be refused. A list of a
/// thousand pod names takes about 2 MiB; ten thousand take more than the regex crate's
/// own limit.
pub const MAX_REGEX_BYTES: usize = 4 << 20;

/// The PromQL parser, with the input it would panic on or be slow on refused first:
/// promql-parser 0.5 turns a plain number used as a duration (`x[5]`, `offset 5`,
/// `[5:1]`) into a `Duration` with `Duration::from_secs_f64`, which panics on `inf`,
/// `nan`, negative and enormous numbers (found by `fuzz/` promql target:
/// `x[3333...3316]`), and it compiles regexes with the regex crate's default size limit
/// (see [`MAX_REGEX_BYTES`]). Every parse in Pulse goes through here.
pub fn parse_expr(text: &str) -> Result<Expr, String> {
    precheck(text)?;
    if text.contains("holt_winters") {
        return parser::parse(&rename_holt_winters(text));
    }
    parser::parse(text)
}

/// `holt_winters` as `double_exponential_smoothing`, the name Prometheus 3 gave it and the
/// only one promql-parser 0.11 knows (the same function).
fn rename_holt_winters(text: &str) -> String {
    use lrpar::{Lexeme, Lexer, NonStreamingLexer};
    let Ok(lexer) = parser::lexer(text) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len() + 20);
    let mut at = 0;
    for lexeme in lexer.iter().flatten() {
        let span = lexeme.span();
        if lexer.span_str(span) == "holt_winters" && lexeme.tok_id() == parser::token::T_IDENTIFIER
        {
            out.push_str(&text[at..span.start()]);
            out.push_str("double_exponential_smoothing");
            at = span.end();
        }
    }
    out.push_str(&text[at..]);
    out
}

/// Refuses a number in a duration position that `std::time::Duration` cannot hold, and a
/// label matcher's regex that compiles to more than [`MAX_REGEX_BYTES`]. Any other error
/// is the parser's to report.
fn precheck(text: &str) -> Result<(), String> {
    use lrpar::{Lexeme, Lexer, NonStreamingLexer};
    use parser::token::{
        T_ADD, T_COLON, T_EQL_REGEX, T_LEFT_BRACKET, T_NEQ_REGEX, T_NUMBER, T_OFFSET, T_STRING,
        T_SUB,
    };
    // A lexer error is the parser's to report.
    let Ok(lexer) = parser::lexer(text) else {
        return Ok(());
    };
    let (mut before, mut previous) = (None, None);
    for lexeme in lexer.iter() {
        let Ok(lexeme) = lexeme else {
            return Ok(());
        };
        let id = lexeme.tok_id();
        let duration_position = match previous {
            Some(T_LEFT_BRACKET | T_COLON | T_OFFSET) => true,
            Some(T_ADD | T_SUB) => before == Some(T_OFFSET),
            _ => false,
        };
        if id == T_NUMBER && duration_position {
            let number = lexer.span_str(lexeme.span());
            if let Ok(secs) = promql_parser::util::parse_str_radix(number) {
                if std::time::Duration::try_from_secs_f64(secs).is_err() {
                    return Err(format!(
                        "{number:?} is not a duration (a number of seconds from 0 to about 5.8e11 years)"
                    ));
                }
            }
        }
        if id == T_STRING && matches!(previous, Some(T_EQL_REGEX | T_NEQ_REGEX)) {
            check_regex_size(lexer.span_str(lexeme.span()))?;
        }
        (before, previous) = (previous, Some(id));
    }
    Ok(())
}

/// Compiles a matcher's regex (a quoted string as written) under [`MAX_REGEX_BYTES`],
/// anchored as the parser anchors it; only "too big" is an error here. A regex that
/// cannot come near the limit is not compiled here (the parser compiles it): most are
/// small, and compiling each twice made every parse slower.
fn check_regex_size(quoted: &str) -> Result<(), String> {
    let Ok(value) = promql_parser::util::unquote_string(quoted) else {
        return Ok(());
    };
    let pattern = format!("^(?:{value})$");
    match regex_syntax::Parser::new().parse(&pattern) {
        Ok(hir) if nfa_states_bound(&hir) <= SMALL_REGEX_STATES => return Ok(()),
        // A syntax error is the parser's to report (it may read Go's literal braces).
        Err(_) => return Ok(()),
        Ok(_) => {}
    }
    match regex::RegexBuilder::new(&pattern)
        .size_limit(MAX_REGEX_BYTES)
        .build()
    {
        Err(regex::Error::CompiledTooBig(_)) => {
            let shown: String = value.chars().take(80).collect();
            let more = if shown.len() < value.len() { "…" } else { "" };
            Err(format!(
                "the regex {shown:?}{more} is too large: compiled, it would take more than {} KiB (the limit for one label matcher)",
                MAX_REGEX_BYTES >> 10
            ))
        }
        _ => Ok(()),
    }
}

/// Regexes with at most this many NFA states by [`nfa_states_bound`] compile to well under
/// [`MAX_REGEX_BYTES`] (a state takes tens of bytes).
const SMALL_REGEX_STATES: u64 = 16_384;

/// More than the states the regex crate's Thompson compiler builds for `hir`: a byte of
/// a literal is a state, a Unicode range at most 40 (its UTF-8 sequences), a repetition
/// one copy of its body per count, plus one for every join.
fn nfa_states_bound(hir: &regex_syntax::hir::Hir) -> u64 {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 1,
        HirKind::Literal(literal) => literal.0.len() as u64 + 1,
        HirKind::Class(Class::Unicode(class)) => 40 * class.ranges().len() as u64 + 1,
        HirKind::Class(Class::Bytes(class)) => class.ranges().len() as u64 + 1,
        HirKind::Repetition(rep) => {
            let copies = u64::from(rep.max.unwrap_or(rep.min)) + 1;
            copies.saturating_mul(nfa_states_bound(&rep.sub))
        }
        HirKind::Capture(capture) => nfa_states_bound(&capture.sub) + 2,
        HirKind::Concat(parts) | HirKind::Alternation(parts) => parts
            .iter()
            .map(nfa_states_bound)
            .fold(parts.len() as u64 + 1, u64::saturating_add),
    }
}

/// Parses label matchers written as a selector, `{severity="critical", gpu=~"0|1"}`.
pub fn parse_matchers(text: &str) -> Result<crate::model::selector::Selector, String> {
    match parse_expr(text)? {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => {
            Ok(eval::selector_of(&vs))
        }
        _ => Err(format!(
            "{text:?} is not a set of label matchers like {{severity=\"critical\"}}"
        )),
    }
}

/// Parses an expression and checks that every part of it is supported.
pub fn parse(text: &str) -> Result<Query, String> {
    let expr = parse_expr(text)?;
    check(&expr)?;
    Ok(Query {
        expr,
        text: text.to_string(),
    })
}

fn check(e: &Expr) -> Result<(), String> {
    match e {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !SUPPORTED_AGGREGATIONS.contains(&op.as_str()) {
                return Err(format!(
                    "aggregation `{op}` is not supported (supported: {})",
                    SUPPORTED_AGGREGATIONS.join(", ")
                ));
            }
            check(&a.expr)?;
            if let Some(p) = &a.param {
                check(p)?;
            }
            Ok(())
        }
        Expr::Unary(u) => check(&u.expr),
        Expr::Binary(b) => {
            check(&b.lhs)?;
            check(&b.rhs)
        }
        Expr::Paren(p) => check(&p.expr),
        Expr::Subquery(s) => check(&s.expr),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => Ok(()),
        Expr::Call(c) => {
            if !SUPPORTED_FUNCTIONS.contains(&c.func.name)
                && !elementwise::NAMES.contains(&c.func.name)
            {
                return Err(format!(
                    "function `{}` is not supported (supported: {}, {})",
                    c.func.name,
                    SUPPORTED_FUNCTIONS.join(", "),
                    elementwise::NAMES.join(", ")
                ));
            }
            c.args.args.iter().try_for_each(|a| check(a))
        }
        Expr::Extension(_) => Err("extension expressions are not supported".to_string()),
    }
}

#[cfg(test)]
mod tests;
