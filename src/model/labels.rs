//! Label sets of query results: sorted, immutable, shared. Each series builds its label
//! set once (see `SeriesKey::label_set`), and the set without `__name__` once more, so
//! selecting a series into a query result, or dropping its name, copies nothing.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

/// A label name or value: shared, so copying labels into query results allocates nothing.
pub type LabelStr = Arc<str>;

/// The metric-name label.
pub const NAME: &str = "__name__";

/// A sorted set of (name, value) pairs.
#[derive(Clone, Default)]
pub struct Labels(Arc<Inner>);

#[derive(Default)]
struct Inner {
    pairs: Vec<(LabelStr, LabelStr)>,
    /// This set without `__name__`, built on first use.
    without_name: OnceLock<Labels>,
}

/// Whether `s` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Labels {
    /// The empty set.
    pub fn new() -> Self {
        Labels::default()
    }

    /// Builds a set; of a repeated name, the last value wins.
    pub fn from_pairs<K: Into<LabelStr>, V: Into<LabelStr>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut pairs: Vec<(LabelStr, LabelStr)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0)); // stable: later duplicates stay later
        let mut out: Vec<(LabelStr, LabelStr)> = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v)),
            }
        }
        Labels(Arc::new(Inner {
            pairs: out,
            without_name: OnceLock::new(),
        }))
    }

    pub fn get(&self, name: &str) -> Option<&LabelStr> {
        let pairs = &self.0.pairs;
        pairs
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &pairs[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&LabelStr, &LabelStr)> {
        self.0.pairs.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.pairs.is_empty()
    }

    /// The set without `__name__` (shared, built once per set).
    pub fn without_name(&self) -> Labels {
        if !self.contains_key(NAME) {
            return self.clone();
        }
        self.0
            .without_name
            .get_or_init(|| self.filter(|k, _| k != NAME))
            .clone()
    }

    /// The pairs `keep` accepts.
    pub fn filter(&self, mut keep: impl FnMut(&str, &str) -> bool) -> Labels {
        Labels::from_pairs(
            self.iter()
                .filter(|(k, v)| keep(k, v))
                .map(|(k, v)| (k.clone(), v.clone())),
        )
    }

    /// A copy with `name` set to `value`.
    pub fn with(&self, name: &str, value: LabelStr) -> Labels {
        Labels::from_pairs(
            self.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain([(LabelStr::from(name), value)]),
        )
    }

    /// A copy without `name`.
    pub fn without(&self, name: &str) -> Labels {
        if self.contains_key(name) {
            self.filter(|k, _| k != name)
        } else {
            self.clone()
        }
    }
}

impl<K: Into<LabelStr>, V: Into<LabelStr>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Labels::from_pairs(iter)
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = LabelStr;
    fn index(&self, name: &str) -> &LabelStr {
        self.get(name)
            .unwrap_or_else(|| panic!("no label {name:?}"))
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.pairs == other.0.pairs
    }
}

impl Eq for Labels {}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.pairs.cmp(&other.0.pairs)
    }
}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.pairs.hash(state);
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (&**k, &**v)))
            .finish()
    }
}

/// FNV-1a over the labels, given sorted by name: the id of an alert (and of the
/// Alertmanager silences that match it).
pub fn fingerprint<K: AsRef<str>, V: AsRef<str>>(
    labels: impl IntoIterator<Item = (K, V)>,
) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k
            .as_ref()
            .bytes()
            .chain([0xff])
            .chain(v.as_ref().bytes())
            .chain([0xff])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_last_wins_and_name_dropped_once() {
        let l = Labels::from_pairs([("b", "1"), (NAME, "m"), ("a", "2"), ("b", "3")]);
        assert_eq!(format!("{l:?}"), r#"{"__name__": "m", "a": "2", "b": "3"}"#);
        let n1 = l.without_name();
        let n2 = l.without_name();
        assert!(Arc::ptr_eq(&n1.0, &n2.0), "built once");
        assert!(!n1.contains_key(NAME));
        assert_eq!(&*l.with("c", "9".into())["c"], "9");
        assert_eq!(l.without("a").len(), 2);
    }
}
