//! Errors of the trainer library. Each variant says whether the user gave something invalid
//! ([`TrainError::is_usage`]: bad configuration, names or files, reported before any expensive
//! work) or the run failed while working; the CLI maps the first to exit code 2 and the second to 1.

use std::path::{Path, PathBuf};
use thiserror::Error;

/// Result alias of the trainer library.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Everything that can go wrong while configuring or running training, evaluation and sweeps.
#[derive(Debug, Error)]
pub enum TrainError {
    /// An invalid configuration, flag value, name or input file content.
    #[error("{0}")]
    Config(String),
    /// A failure while the run was working (non-finite updates, a missing checkpoint, ...).
    #[error("{0}")]
    Run(String),
    /// Weights or optimizer moments that are NaN or infinite (the named tensor).
    #[error("{0} is not finite")]
    NonFinite(String),
    /// The run stopped at a signal after checkpointing its last finished step.
    #[error(
        "stopped by signal {signal} after step {step}; checkpoint {checkpoint} written; continue \
         with `rlvr train --resume {run}`",
        checkpoint = checkpoint.display(),
        run = run.display()
    )]
    Interrupted {
        /// The signal number (2 = SIGINT, 15 = SIGTERM).
        signal: i32,
        /// The last finished step.
        step: u64,
        /// The checkpoint written for it.
        checkpoint: PathBuf,
        /// The run folder.
        run: PathBuf,
    },
    /// A file or folder could not be read or written (the reason is its `source()`).
    #[error("{}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An error of the core contracts (unknown names and invalid parameters are usage errors).
    #[error(transparent)]
    Core(#[from] rlvr_core::CoreError),
    /// An error of the models crate (checkpoints, tokenizers, generation).
    #[error(transparent)]
    Model(#[from] rlvr_models::ModelError),
    /// An error reading a dataset.
    #[error(transparent)]
    Data(#[from] rlvr_rewards::data::DataError),
    /// An error raised by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// An error of the evaluation crate (reports, figures).
    #[error(transparent)]
    Eval(#[from] anyhow::Error),
    /// JSON that could not be written or read.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// TOML that could not be written.
    #[error("toml: {0}")]
    TomlWrite(#[from] toml::ser::Error),
    /// A TensorBoard event file could not be written.
    #[error("tensorboard: {0}")]
    TensorBoard(String),
    /// An error with the context it happened in (the cause is its `source()`).
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// What went wrong.
        #[source]
        source: Box<TrainError>,
    },
}

impl TrainError {
    /// A usage or configuration error (exit code 2) rather than a run-time failure (exit code 1).
    pub fn is_usage(&self) -> bool {
        use rlvr_core::CoreError as C;
        match self {
            TrainError::Config(_) => true,
            TrainError::Core(C::UnknownName { .. } | C::InvalidParam { .. } | C::Config { .. }) => {
                true
            }
            TrainError::Data(_) | TrainError::Core(C::Input(_)) => true,
            TrainError::Context { source, .. } => source.is_usage(),
            _ => false,
        }
    }

    /// The process exit code a command line should end with for this error: 128 + the signal
    /// for an interrupted run, 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            TrainError::Interrupted { signal, .. } => (128 + signal).clamp(0, 255) as u8,
            TrainError::Context { source, .. } => source.exit_code(),
            e if e.is_usage() => 2,
            _ => 1,
        }
    }

    /// Wraps the error with what was being done.
    pub fn context(self, context: impl Into<String>) -> TrainError {
        TrainError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// An I/O error naming its path.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> TrainError {
        TrainError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

impl From<rlvr_core::atomic::PathError> for TrainError {
    fn from(e: rlvr_core::atomic::PathError) -> TrainError {
        TrainError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// `bail!`-style shorthand for [`TrainError::Config`].
#[macro_export]
macro_rules! config_bail {
    ($($arg:tt)*) => {
        return Err($crate::TrainError::Config(format!($($arg)*)))
    };
}

/// Adds context to results whose error converts into [`TrainError`].
pub trait ResultExt<T> {
    /// Wraps an error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wraps an error with a lazily built context.
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<TrainError>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

/// Attaches the path to I/O errors.
pub trait IoResultExt<T> {
    /// Maps an I/O error to [`TrainError::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoResultExt<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| TrainError::io(path, e))
    }
}

/// File-system helpers that name the path in every error.
pub mod fs {
    use super::{IoResultExt, Result};
    use std::path::Path;

    /// `std::fs::create_dir_all` naming the folder.
    pub fn create_dir_all(path: &Path) -> Result<()> {
        std::fs::create_dir_all(path).at(path)
    }

    /// `std::fs::read_to_string` naming the file.
    pub fn read_to_string(path: &Path) -> Result<String> {
        std::fs::read_to_string(path).at(path)
    }

    /// Writes `text` to `path` through a temporary file and a rename
    /// ([`rlvr_core::atomic::write_file`]).
    pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
        Ok(rlvr_core::atomic::write_file(path, text)?)
    }
}
