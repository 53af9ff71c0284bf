//! Commands on the pipeline's command stream (a tokio broadcast channel): the simulator
//! and workers subscribed to `GET /api/v1/commands` receive them.

use serde::{Deserialize, Serialize};

/// A command for the workers that own GPU memory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Release cached GPU memory (for PyTorch workers: `torch.cuda.empty_cache()`).
    Cleanup {
        /// Unique id, echoed in the API response.
        id: String,
        /// GPU indices (the `gpu` label) to clean; `None` means every GPU.
        gpus: Option<Vec<String>>,
        /// Unix ms when the command was issued.
        issued_at_ms: i64,
    },
}

impl Command {
    /// Whether a cleanup command covers the GPU with this `gpu` label.
    pub fn covers_gpu(&self, gpu: &str) -> bool {
        match self {
            Command::Cleanup { gpus: None, .. } => true,
            Command::Cleanup {
                gpus: Some(list), ..
            } => list.iter().any(|g| g == gpu),
        }
    }
}
