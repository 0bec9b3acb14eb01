//! Errors of the models crate.

use std::path::Path;
use thiserror::Error;

/// Result alias of the models crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What can go wrong loading, running or saving a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A `config.json` that cannot be used.
    #[error("model config: {0}")]
    Config(String),
    /// An architecture or option this crate does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A tensor missing from the checkpoint.
    #[error("checkpoint lacks tensor `{0}`")]
    MissingTensor(String),
    /// A tensor of the wrong shape.
    #[error(
        "tensor `{name}` has shape {found:?} in the checkpoint, the model expects {expected:?}"
    )]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// Shape the model expects.
        expected: Vec<i64>,
        /// Shape in the checkpoint.
        found: Vec<i64>,
    },
    /// Checkpoint weights that cannot be used as they are (non-finite values, layers the
    /// configuration lacks).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A model that does not fit the memory it would be built in.
    #[error("{0}")]
    TooLarge(String),
    /// A tokenizer problem.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A file that cannot be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What happened.
        message: String,
    },
    /// libtorch failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A core contract failed.
    #[error(transparent)]
    Core(#[from] rlvr_core::CoreError),
    /// A shim kernel (`rlvr-kernels`) refused its inputs or failed.
    #[error(transparent)]
    Kernel(#[from] rlvr_kernels::KernelError),
}

impl ModelError {
    /// An I/O error naming the file.
    pub fn io(path: &Path, e: impl ToString) -> ModelError {
        ModelError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Adds the file to a config error.
    pub fn in_file(self, path: &Path) -> ModelError {
        match self {
            ModelError::Config(m) => ModelError::Config(format!("{}: {m}", path.display())),
            ModelError::Unsupported(m) => {
                ModelError::Unsupported(format!("{}: {m}", path.display()))
            }
            other => other,
        }
    }
}

impl ModelError {
    /// The error of reading saved weights back ([`rlvr_core::Policy::load`]): a run-time failure
    /// (exit 1), where the same error while building a model from its configuration is a usage one.
    pub fn into_load_error(self) -> rlvr_core::CoreError {
        match self {
            ModelError::Core(c) => c,
            ModelError::Torch(t) => rlvr_core::CoreError::Torch(t),
            other => rlvr_core::CoreError::Checkpoint(other.to_string()),
        }
    }
}

impl From<ModelError> for rlvr_core::CoreError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Core(c) => c,
            ModelError::Torch(t) => rlvr_core::CoreError::Torch(t),
            ModelError::TooLarge(m) => rlvr_core::CoreError::Resources(m),
            other => rlvr_core::CoreError::config("model", other),
        }
    }
}
