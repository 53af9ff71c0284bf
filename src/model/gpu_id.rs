//! A GPU's `gpu` label as clients write it in JSON: a string (`"0"`) or a non-negative
//! integer (`0`), the same GPU either way.

use serde::{Deserialize, Deserializer};

/// A `gpu` label value read from JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuId(pub String);

/// In the API's schema: a string, or a non-negative integer.
impl utoipa::PartialSchema for GpuId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .description(Some(
                "a `gpu` label: a string (`\"0\"`) or a non-negative integer (`0`)",
            ))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .into()
    }
}

impl utoipa::ToSchema for GpuId {}

impl<'de> Deserialize<'de> for GpuId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            S(String),
            N(u64),
        }
        match Either::deserialize(d) {
            Ok(Either::S(s)) => Ok(GpuId(s)),
            Ok(Either::N(n)) => Ok(GpuId(n.to_string())),
            Err(_) => Err(serde::de::Error::custom(
                "expected a string or a non-negative integer",
            )),
        }
    }
}

/// `deserialize_with` for an optional GPU id, kept as its label value.
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<GpuId>::deserialize(d)?.map(|g| g.0))
}

/// `deserialize_with` for an optional list of GPU ids, kept as their label values.
pub fn optional_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<Vec<GpuId>>::deserialize(d)?.map(|ids| ids.into_iter().map(|g| g.0).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "optional_list")]
        gpus: Option<Vec<String>>,
    }

    #[test]
    fn a_gpu_is_a_string_or_a_non_negative_integer() {
        let gpus = |json: &str| serde_json::from_str::<Body>(json).map(|b| b.gpus);
        assert_eq!(
            gpus(r#"{"gpus":["0", 1]}"#).unwrap(),
            Some(vec!["0".into(), "1".into()])
        );
        assert_eq!(gpus("{}").unwrap(), None);
        let err = gpus(r#"{"gpus":[-1]}"#).unwrap_err().to_string();
        assert!(
            err.contains("expected a string or a non-negative integer"),
            "{err}"
        );
    }
}
