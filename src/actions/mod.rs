//! Closing the loop: alerting rules that act. An alerting rule names its action in an
//! annotation, `pulse_action` (promtool and Prometheus ignore annotations they do not
//! know, so a rule file stays valid for both):
//!
//! - `cleanup`: the GPU cleanup command to the workers of the alert's GPU (its `Hostname`
//!   and `gpu` labels), as `POST /api/phase4/gpu/cleanup` sends it;
//! - `command:NAME`: a named command on the `/api/v1/commands` stream, with the alert's
//!   labels (workers decide what `drain`, `shrink_batch` or `restart` mean);
//! - `webhook:URL`: a JSON POST of the action (trigger and labels) to an `http://` URL.
//!
//! Every firing alert of such a rule goes to the [`actor::ActionRunner`] after each
//! evaluation. Its [`guard::Guard`] decides, with the guardrails of `[actions]`
//! ([`config::ActionsConfig`]): dry run by default, a minimum firing time, a cooldown per
//! target, a rate limit, a limit of actions awaiting their outcome, never on an
//! acknowledged or silenced alert, never on stale data, and a kill switch. Every decision
//! that acts or refuses is recorded (`GET /api/phase4/actions`).

pub mod actor;
pub mod config;
pub mod guard;
pub mod messages;
pub mod store;

use serde::{Deserialize, Serialize};

/// The annotation that names an alerting rule's action.
pub const ACTION_ANNOTATION: &str = "pulse_action";

/// What an alerting rule does when it fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// `cleanup`: the GPU's workers release cached memory.
    Cleanup,
    /// `command:NAME`: a named command on the command stream.
    Command { name: String },
    /// `webhook:URL`: the record POSTed to a URL.
    Webhook { url: String },
}

impl Action {
    /// Parses a `pulse_action` annotation; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Action, String> {
        let text = text.trim();
        let accepted = "accepted: `cleanup`, `command:NAME`, `webhook:http(s)://HOST/PATH`";
        if text == "cleanup" {
            return Ok(Action::Cleanup);
        }
        if let Some(name) = text.strip_prefix("command:") {
            let name = name.trim();
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(format!(
                    "command name {name:?}: letters, digits, `_` and `-` only"
                ));
            }
            return Ok(Action::Command {
                name: name.to_string(),
            });
        }
        if let Some(url) = text.strip_prefix("webhook:") {
            let url = url.trim();
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .ok_or_else(|| {
                    format!("webhook URL {url:?}: must start with http:// or https://")
                })?;
            let host = rest.split('/').next().unwrap_or("");
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(format!("webhook URL {url:?}: no host"));
            }
            return Ok(Action::Webhook {
                url: url.to_string(),
            });
        }
        Err(format!("unknown action {text:?} ({accepted})"))
    }

    /// `cleanup`, `command` or `webhook`: the `action` label in `/metrics`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Cleanup => "cleanup",
            Action::Command { .. } => "command",
            Action::Webhook { .. } => "webhook",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!(Action::parse("cleanup"), Ok(Action::Cleanup));
        assert_eq!(
            Action::parse(" command:drain "),
            Ok(Action::Command {
                name: "drain".into()
            })
        );
        assert_eq!(
            Action::parse("webhook:http://127.0.0.1:9/hook"),
            Ok(Action::Webhook {
                url: "http://127.0.0.1:9/hook".into()
            })
        );
        let e = Action::parse("reboot").unwrap_err();
        assert!(
            e.contains("unknown action \"reboot\"") && e.contains("command:NAME"),
            "{e}"
        );
        assert!(Action::parse("command:").is_err());
        assert!(Action::parse("command:rm -rf").is_err());
        assert_eq!(
            Action::parse("webhook:https://hooks.example/pulse"),
            Ok(Action::Webhook {
                url: "https://hooks.example/pulse".into()
            })
        );
        let e = Action::parse("webhook:ftp://x/y").unwrap_err();
        assert!(e.contains("http:// or https://"), "{e}");
        assert!(Action::parse("webhook:http:///y").is_err());
    }
}
