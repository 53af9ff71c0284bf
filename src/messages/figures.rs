//! How measured figures are written in API answers: to six significant digits, which keeps
//! every digit a GPU or a request metric carries (52.3180 °C, 40 123.5 MiB, 0.000412 s)
//! and drops the binary noise of averages (`52.317953873882715`). Internal computations
//! keep full precision; only what is serialised is rounded.

use serde::Serializer;

/// Significant digits kept.
pub const SIGNIFICANT_DIGITS: i32 = 6;

/// `v` to [`SIGNIFICANT_DIGITS`] significant digits (non-finite values and zero as they
/// are). The result is the double nearest the rounded decimal, so JSON prints that decimal.
pub fn rounded(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    // Decimal scientific notation with that many digits, read back: exact at any magnitude
    // (scaling by powers of ten is not, past 10^22).
    let precision = (SIGNIFICANT_DIGITS - 1) as usize;
    format!("{v:.precision$e}").parse().unwrap_or(v)
}

/// `#[serde(serialize_with = "figures::six")]`.
pub fn six<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(rounded(*v))
}

/// The same for a list of figures.
pub fn six_vec<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|v| rounded(*v)))
}

/// The same for a list of `[lower, upper]` pairs.
pub fn six_pairs<S: Serializer>(v: &[[f64; 2]], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|[a, b]| [rounded(*a), rounded(*b)]))
}

/// The same for an optional figure.
pub fn six_opt<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&rounded(*v)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_significant_digits_print_as_the_decimal() {
        let json = |v: f64| serde_json::to_string(&rounded(v)).unwrap();
        assert_eq!(json(52.317953873882715), "52.318");
        assert_eq!(json(40_123.456_789), "40123.5");
        assert_eq!(json(0.000_412_345_67), "0.000412346");
        assert_eq!(json(-1.234_567_8), "-1.23457");
        assert_eq!(json(81_559_123.0), "81559100.0");
        assert_eq!(json(71.0), "71.0");
        assert_eq!(json(0.0), "0.0");
        assert!(rounded(f64::NAN).is_nan());
        #[derive(serde::Serialize)]
        struct Figures {
            #[serde(serialize_with = "six_vec")]
            list: Vec<f64>,
            #[serde(serialize_with = "six_pairs")]
            pairs: Vec<[f64; 2]>,
            #[serde(serialize_with = "six_opt")]
            none: Option<f64>,
        }
        let f = Figures {
            list: vec![1.0 / 3.0],
            pairs: vec![[2.0 / 3.0, 40_123.456_789]],
            none: None,
        };
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"list":[0.333333],"pairs":[[0.666667,40123.5]],"none":null}"#
        );
        assert_eq!(rounded(1.234_567_8e-300), 1.234_57e-300);
    }
}
