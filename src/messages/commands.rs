//! Commands on the pipeline's command stream (a tokio broadcast channel): the simulator
//! and workers subscribed to `GET /api/v1/commands` receive them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A command for the workers that own GPU memory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Release cached GPU memory (for PyTorch workers: `torch.cuda.empty_cache()`).
    Cleanup {
        /// Unique id, echoed in the API response.
        id: String,
        /// GPU indices (the `gpu` label) to clean; `None` means every GPU.
        gpus: Option<Vec<String>>,
        /// The host (`Hostname`) whose workers it is for; `None`: every host's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// Unix ms when the command was issued.
        issued_at_ms: i64,
    },
    /// A named command an alerting rule's action sends (`pulse_action: command:NAME`):
    /// workers decide what it means (drain this GPU, shrink the batch, restart).
    Action {
        /// Unique id (`action-N`), the one a worker acknowledges.
        id: String,
        /// The action's name (`command:NAME`).
        name: String,
        /// The alert's labels (`Hostname` and `gpu` name the target).
        labels: BTreeMap<String, String>,
        /// Unix ms when the command was issued.
        issued_at_ms: i64,
    },
}

impl Command {
    /// Whether a cleanup command covers the GPU with this `gpu` label on `host`.
    pub fn cleans(&self, host: &str, gpu: &str) -> bool {
        match self {
            Command::Cleanup { gpus, host: h, .. } => {
                h.as_deref().is_none_or(|h| h == host)
                    && gpus.as_ref().is_none_or(|l| l.iter().any(|g| g == gpu))
            }
            Command::Action { .. } => false,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Command::Cleanup { id, .. } | Command::Action { id, .. } => id,
        }
    }

    /// The event name on the command stream: `cleanup` or `action`.
    pub fn event(&self) -> &'static str {
        match self {
            Command::Cleanup { .. } => "cleanup",
            Command::Action { .. } => "action",
        }
    }
}
