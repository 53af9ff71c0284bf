//! Functions that map each sample's value on its own: math (`round`, `ln`, `clamp`, ...),
//! trigonometry, and the calendar of a Unix time (`hour`, `day_of_week`, ...), with
//! Prometheus 2.42's semantics. All drop the metric name.

use super::VecSample;

/// The names this file evaluates.
pub const NAMES: &[&str] = &[
    "ceil",
    "floor",
    "exp",
    "ln",
    "log2",
    "log10",
    "sqrt",
    "sgn",
    "round",
    "clamp",
    "deg",
    "rad",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "minute",
    "hour",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "month",
    "year",
];

/// Whether `name` is a calendar function (its argument defaults to `vector(time())`).
pub fn is_calendar(name: &str) -> bool {
    matches!(
        name,
        "minute"
            | "hour"
            | "day_of_month"
            | "day_of_week"
            | "day_of_year"
            | "days_in_month"
            | "month"
            | "year"
    )
}

/// Applies `name` to every sample; `params` are the scalar arguments after the vector.
pub fn apply(name: &str, v: Vec<VecSample>, params: &[f64]) -> Vec<VecSample> {
    if name == "clamp" {
        let (min, max) = (params[0], params[1]);
        // Prometheus returns nothing when the bounds cross.
        if max < min {
            return Vec::new();
        }
        return map(v, |x| {
            super::functions::go_max(min, super::functions::go_min(max, x))
        });
    }
    if name == "round" {
        let to = params.first().copied().unwrap_or(1.0);
        // Go's math.Floor(v*inv + 0.5) / inv, with inv = 1/to (ties round up).
        let inverse = 1.0 / to;
        return map(v, |x| (x * inverse + 0.5).floor() / inverse);
    }
    if is_calendar(name) {
        return map(v, |x| calendar(name, x));
    }
    let f: fn(f64) -> f64 = match name {
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sqrt" => f64::sqrt,
        "sgn" => |x: f64| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        },
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        _ => unreachable!("{name} is not in NAMES"),
    };
    map(v, f)
}

fn map(v: Vec<VecSample>, f: impl Fn(f64) -> f64) -> Vec<VecSample> {
    v.into_iter()
        .map(|s| VecSample {
            labels: s.labels.without_name(),
            value: f(s.value),
        })
        .collect()
}

/// A calendar field of Unix seconds `t` in UTC (NaN stays NaN).
fn calendar(name: &str, t: f64) -> f64 {
    if !t.is_finite() {
        return f64::NAN;
    }
    let secs = t as i64;
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    match name {
        "minute" => (in_day / 60 % 60) as f64,
        "hour" => (in_day / 3600) as f64,
        "day_of_month" => d as f64,
        // 1970-01-01 was a Thursday (4).
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => (month_days[..(m - 1) as usize].iter().sum::<u32>() + d) as f64,
        "days_in_month" => month_days[(m - 1) as usize] as f64,
        "month" => m as f64,
        _ => y as f64,
    }
}

/// (year, month, day) of days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`): the inverse
/// of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
