//! The values templates work on, with Go's truth.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A template value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A `map[string]string` (labels): a missing key is "".
    Map(Arc<BTreeMap<String, String>>),
    /// A struct: a missing field is an error.
    Record(Arc<BTreeMap<String, Value>>),
    List(Arc<Vec<Value>>),
}

impl Value {
    /// Go's truth: false, 0, nil and empty things are false.
    pub fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Record(_) => true,
            Value::List(l) => !l.is_empty(),
        }
    }

    /// Go's type name, as `fmt` writes it in `%!d(float64=1.5)`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Map(_) => "map[string]string",
            Value::Record(_) => "struct",
            Value::List(_) => "[]interface {}",
        }
    }

    /// `fmt.Sprint` of the value (`%v`).
    pub fn print(&self) -> String {
        match self {
            Value::Nil => "<nil>".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => super::format_go_float(*f),
            Value::Str(s) => s.clone(),
            Value::Map(m) => {
                let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", items.join(" "))
            }
            Value::Record(r) => {
                let items: Vec<String> = r.values().map(Value::print).collect();
                format!("{{{}}}", items.join(" "))
            }
            Value::List(l) => {
                let items: Vec<String> = l.iter().map(Value::print).collect();
                format!("[{}]", items.join(" "))
            }
        }
    }

    pub(super) fn field(&self, name: &str) -> Result<Value, String> {
        match self {
            Value::Map(m) => Ok(Value::Str(m.get(name).cloned().unwrap_or_default())),
            Value::Record(r) => r
                .get(name)
                .cloned()
                .ok_or_else(|| format!("can't evaluate field {name} in type struct")),
            Value::Nil => Err(format!("nil pointer evaluating interface {{}}.{name}")),
            other => Err(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            )),
        }
    }
}
