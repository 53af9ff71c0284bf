//! The one sample model: a series is a metric name plus sorted labels; a sample is a
//! series, a timestamp in Unix milliseconds and an f64 value.
//!
//! Series keys are interned behind an `Arc` by whoever produces them (samplers build
//! their keys once), and carry a precomputed hash so the window store's map lookups
//! cost one integer hash and, usually, one pointer comparison.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

pub use super::labels::LabelStr;

/// Prometheus' staleness marker: a NaN with this bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether a value is a staleness marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Metric name plus label pairs sorted by label name (no duplicates).
#[derive(Debug, Clone)]
pub struct SeriesKey {
    name: LabelStr,
    labels: Vec<(LabelStr, LabelStr)>,
    /// Hash of name and labels, computed once at construction.
    hash: u64,
    /// The label set of query results (name included), built on first use.
    label_set: std::sync::OnceLock<super::labels::Labels>,
}

/// A shared series key: cheap to clone into every sample.
pub type Series = Arc<SeriesKey>;

impl SeriesKey {
    /// Builds a key; labels are sorted by name and a repeated name keeps its last value.
    pub fn new<N, K, V, I>(name: N, labels: I) -> Self
    where
        N: Into<LabelStr>,
        K: Into<LabelStr>,
        V: Into<LabelStr>,
        I: IntoIterator<Item = (K, V)>,
    {
        let mut labels: Vec<(LabelStr, LabelStr)> = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // Stable: of a repeated label name, the last value wins.
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let mut deduped: Vec<(LabelStr, LabelStr)> = Vec::with_capacity(labels.len());
        for (k, v) in labels {
            match deduped.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => deduped.push((k, v)),
            }
        }
        let name: LabelStr = name.into();
        let mut hasher = DefaultHasher::new();
        name.hash(&mut hasher);
        deduped.hash(&mut hasher);
        SeriesKey {
            name,
            labels: deduped,
            hash: hasher.finish(),
            label_set: std::sync::OnceLock::new(),
        }
    }

    /// Same as [`SeriesKey::new`], already behind an `Arc`.
    pub fn shared<N, K, V, I>(name: N, labels: I) -> Series
    where
        N: Into<LabelStr>,
        K: Into<LabelStr>,
        V: Into<LabelStr>,
        I: IntoIterator<Item = (K, V)>,
    {
        Arc::new(Self::new(name, labels))
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Label pairs, sorted by name.
    pub fn labels(&self) -> &[(LabelStr, LabelStr)] {
        &self.labels
    }

    /// Name and labels as a query-result label set (shared, built once per series).
    pub fn label_set(&self) -> super::labels::Labels {
        self.label_set
            .get_or_init(|| {
                super::labels::Labels::from_pairs(
                    self.labels
                        .iter()
                        .cloned()
                        .chain([(LabelStr::from(super::labels::NAME), self.name.clone())]),
                )
            })
            .clone()
    }

    /// The metric name, shared.
    pub fn name_shared(&self) -> &LabelStr {
        &self.name
    }

    /// The value of one label, `__name__` included.
    pub fn label(&self, name: &str) -> Option<&str> {
        if name == "__name__" {
            return Some(&self.name);
        }
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &*self.labels[i].1)
    }
}

impl PartialEq for SeriesKey {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
            || (self.hash == other.hash && self.name == other.name && self.labels == other.labels)
    }
}

impl Eq for SeriesKey {}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for SeriesKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SeriesKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.name, &self.labels).cmp(&(&other.name, &other.labels))
    }
}

/// Prometheus notation: `name{a="x",b="y"}` with label values escaped.
impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if self.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}=\"{}\"", escape_label_value(v))?;
        }
        f.write_str("}")
    }
}

impl SeriesKey {
    /// Reads back what `Display` writes (`name{a="x",b="y"}`), as the Redis keys hold it;
    /// `None` for anything else.
    pub fn parse(text: &str) -> Option<Series> {
        let (name, rest) = match text.find('{') {
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (text, ""),
        };
        if name.is_empty() {
            return None;
        }
        let mut labels = Vec::new();
        let mut chars = rest.chars().peekable();
        if !rest.is_empty() {
            loop {
                if chars.peek() == Some(&'}') {
                    chars.next();
                    break;
                }
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                if key.is_empty() || chars.next() != Some('"') {
                    return None;
                }
                let mut value = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        c => value.push(c),
                    }
                }
                labels.push((key, value));
                match chars.next()? {
                    ',' => {}
                    '}' => break,
                    _ => return None,
                }
            }
            if chars.next().is_some() {
                return None;
            }
        }
        Some(Self::shared(name, labels))
    }
}

/// Escapes a label value for the Prometheus text format.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl Serialize for SeriesKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("metric", &self.name)?;
        map.serialize_entry("labels", &LabelMap(&self.labels))?;
        map.end()
    }
}

/// A series as the API shows it: its metric name and its other labels (the schema of how a
/// `SeriesKey` serialises).
#[derive(utoipa::ToSchema)]
#[schema(as = Series)]
pub struct SeriesShape {
    /// The metric name.
    pub metric: String,
    /// The other labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

struct LabelMap<'a>(&'a [(LabelStr, LabelStr)]);

impl Serialize for LabelMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// One observation of one series.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Which series.
    #[serde(flatten)]
    pub series: Series,
    /// Unix milliseconds.
    pub timestamp_ms: i64,
    /// The value; NaN is kept (it means "no value" downstream).
    pub value: f64,
    /// The series key's hash, copied where the sample is made (see [`Sample::key`]).
    #[serde(skip)]
    series_hash: u64,
}

impl Sample {
    pub fn new(series: Series, timestamp_ms: i64, value: f64) -> Self {
        Sample {
            series_hash: series.hash,
            series,
            timestamp_ms,
            value,
        }
    }

    /// The series, for a lookup in a map keyed by [`Series`] that reads neither the key's
    /// memory for its hash nor, when the map holds the same `Arc`, for its labels. The
    /// window store's lookup read the hash out of the key: a cache miss on nearly every
    /// sample, since samplers on other threads had just touched the key's reference count
    /// (half of `WindowStore::ingest` in `perf annotate` of the pipeline bench).
    pub fn key(&self) -> SeriesRef<'_> {
        SeriesRef {
            hash: self.series_hash,
            series: &self.series,
        }
    }
}

/// A series with its hash beside it: see [`Sample::key`].
pub struct SeriesRef<'a> {
    hash: u64,
    series: &'a Series,
}

impl Hash for SeriesRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl hashbrown::Equivalent<Series> for SeriesRef<'_> {
    fn equivalent(&self, key: &Series) -> bool {
        // `SeriesKey`'s equality compares the pointers first: the same `Arc` is not read.
        self.series == key
    }
}

/// Label naming the series a derived series (score, forecast) was computed from.
pub const DERIVED_FROM_LABEL: &str = "metric";

/// A series computed from `source`: named `name`, with `source`'s labels plus
/// `metric="<source name>"` and `extra` (which replace labels of the same names).
pub fn derived_series(source: &SeriesKey, name: &str, extra: &[(&str, &str)]) -> Series {
    let mut labels: Vec<(LabelStr, LabelStr)> = source
        .labels()
        .iter()
        .filter(|(k, _)| &**k != DERIVED_FROM_LABEL && !extra.iter().any(|(e, _)| *e == &**k))
        .cloned()
        .collect();
    labels.push((DERIVED_FROM_LABEL.into(), source.name_shared().clone()));
    for (k, v) in extra {
        labels.push(((*k).into(), (*v).into()));
    }
    SeriesKey::shared(name, labels)
}

/// A hasher that passes the precomputed `SeriesKey` hash through.
#[derive(Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than SeriesKey: fold the bytes in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// `BuildHasher` for maps keyed by [`Series`].
pub type BuildPrehashed = BuildHasherDefault<PrehashedHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_deduplicated() {
        let k = SeriesKey::new("m", [("b", "1"), ("a", "2"), ("b", "3")]);
        let pairs: Vec<(&str, &str)> = k.labels().iter().map(|(a, b)| (&**a, &**b)).collect();
        assert_eq!(pairs, [("a", "2"), ("b", "3")]);
        assert_eq!(k.label("b"), Some("3"));
        assert_eq!(k.label("__name__"), Some("m"));
        assert_eq!(k.label("zz"), None);
    }

    #[test]
    fn equal_keys_built_apart_are_equal_and_hash_alike() {
        let a = SeriesKey::new("m", [("x", "1"), ("y", "2")]);
        let b = SeriesKey::new("m", [("y", "2"), ("x", "1")]);
        assert_eq!(a, b);
        assert_eq!(a.hash, b.hash);
        assert_ne!(a, SeriesKey::new("m", [("x", "1")]));
    }

    #[test]
    fn displays_in_prometheus_notation_with_escapes() {
        let k = SeriesKey::new("m", [("r", "a\"b\\c")]);
        assert_eq!(k.to_string(), r#"m{r="a\"b\\c"}"#);
        assert_eq!(
            SeriesKey::new("up", Vec::<(&str, &str)>::new()).to_string(),
            "up"
        );
    }

    #[test]
    fn parse_reads_back_what_display_writes() {
        for k in [
            SeriesKey::new("m", [("r", "a\"b\\c\nd"), ("gpu", "0"), ("e", "")]),
            SeriesKey::new("up", Vec::<(&str, &str)>::new()),
            SeriesKey::new("x", [("a", "{,}=")]),
        ] {
            let back = SeriesKey::parse(&k.to_string()).expect("parses");
            assert_eq!(*back, k, "{k}");
        }
        for bad in [
            "",
            "{a=\"b\"}",
            "m{a=b}",
            "m{a=\"b\"",
            "m{a=\"b\"}x",
            "m{a=\"b\";}",
        ] {
            assert!(SeriesKey::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn sample_serialises_with_metric_and_labels() {
        let s = Sample::new(SeriesKey::shared("m", [("gpu", "0")]), 5, 1.5);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"metric":"m","labels":{"gpu":"0"},"timestamp_ms":5,"value":1.5})
        );
    }
}
