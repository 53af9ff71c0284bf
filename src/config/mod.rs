//! Configuration: the service settings (`config/pulse.toml`) and the pipeline, what flows
//! where (`pipelines/default.toml`). Both are built into the binary as defaults. Every
//! error names the file, line, column and key.

pub mod pipeline;
pub mod plan;
pub mod service;

use serde::de::DeserializeOwned;

/// A configuration error, naming where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}:{line}:{column}: `{key}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Unreadable { file: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    /// A rule file named by `rules.paths` (or the built-in pack) does not load.
    #[error("{0}")]
    Rules(#[from] crate::rules::RuleError),
    /// The role started (`agent`, `aggregate`) needs what the configuration lacks.
    #[error("{0}")]
    Role(String),
}

/// Parses TOML into `T`; errors carry file, line, column and the dotted key.
pub fn parse_toml<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let mut key = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().trim().to_string();
        // For an unknown key serde reports the table; name the key itself.
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            if key == "." || key.is_empty() {
                key = field.to_string();
            } else if !key.ends_with(field) {
                key = format!("{key}.{field}");
            }
        }
        let (line, column) = inner
            .span()
            .map(|span| line_col(text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Invalid {
            file: file.to_string(),
            line,
            column,
            key,
            message,
        }
    })
}

/// Reads a configuration file: its name for errors, and its text.
pub fn read_text(path: &std::path::Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
        file: file.clone(),
        message: e.to_string(),
    })?;
    Ok((file, text))
}

/// Where a dotted key (`section.sub.key`) is written in a TOML text: the line and column
/// of its last part inside its table, or of the table header, or (1, 1).
pub fn locate_key(text: &str, key: &str) -> (usize, usize) {
    let (table, field) = key.rsplit_once('.').unwrap_or(("", key));
    let mut in_table = table.is_empty();
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(header) = trimmed.strip_prefix('[') {
            let name = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            in_table = name == table;
            if in_table && found.is_none() {
                found = Some((i + 1, line.len() - trimmed.len() + 1));
            }
            continue;
        }
        if in_table {
            let name = trimmed.split('=').next().unwrap_or("").trim();
            if name == field && trimmed.contains('=') {
                return (i + 1, line.len() - trimmed.len() + 1);
            }
        }
    }
    found.unwrap_or((1, 1))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc\n", 0), (1, 1));
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
    }
}
