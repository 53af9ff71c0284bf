//! YAML read as Prometheus reads rule and test files: merge keys (`<<: *anchor`) applied,
//! and a scalar read where Prometheus reads a string kept as written (`values: 0x720` is
//! the text "0x720", not the number 1824; `severity: 2` is "2"; `null` is "").

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Deserializer, Visitor};

/// Parses `text`, applying merge keys first when it has any.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_yaml::Error> {
    if !text.contains("<<") {
        return serde_yaml::from_str(text);
    }
    let mut value: serde_yaml::Value = serde_yaml::from_str(text)?;
    value.apply_merge()?;
    serde_yaml::from_value(value)
}

struct ScalarText;

impl<'de> Visitor<'de> for ScalarText {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string or another scalar")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(serde_yaml::Number::from(v).to_string()))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A scalar read for its text (asked for as a string, so YAML does not resolve it).
struct Raw(Option<String>);

impl<'de> serde::Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_string(ScalarText).map(Raw)
    }
}

/// A scalar as its text; `null` as "".
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_text(d)?.unwrap_or_default())
}

/// A scalar as its text; `null` (or no key, with `#[serde(default)]`) as `None`.
pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    // `null`, `~` and nothing are null; anything else is read as written.
    let raw: Option<Raw> = serde::Deserialize::deserialize(d)?;
    Ok(raw.and_then(|r| r.0))
}

/// A map of scalars as text (`null` values as ""); a `null` map as empty.
pub fn text_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Text(#[serde(deserialize_with = "text")] String);
    let m: Option<BTreeMap<String, Text>> = serde::Deserialize::deserialize(d)?;
    Ok(m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Doc {
        #[serde(deserialize_with = "text")]
        values: String,
        #[serde(default, deserialize_with = "text_map")]
        labels: BTreeMap<String, String>,
    }

    #[test]
    fn scalars_are_read_as_written_and_merge_keys_apply() {
        let d: Doc = from_str("values: 0x720\nlabels: {a: 2, b: null, c: 1e3}").unwrap();
        assert_eq!(d.values, "0x720");
        assert_eq!(d.labels["a"], "2");
        assert_eq!(d.labels["b"], "");
        assert_eq!(d.labels["c"], "1e3");
        let d: Vec<Doc> = from_str(
            "- &base {values: '1 2', labels: {team: gpu, severity: page}}\n- <<: *base\n  labels: {team: ml}",
        )
        .unwrap();
        assert_eq!(d[1].values, "1 2");
        assert_eq!(d[1].labels["team"], "ml");
        let d: Doc = from_str("values:\nlabels:").unwrap();
        assert_eq!((d.values.as_str(), d.labels.len()), ("", 0));
    }
}
