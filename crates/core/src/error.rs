//! Error types of the core contracts.

use thiserror::Error;

/// Result alias used across the core crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the core contracts. Messages name what was wrong and what is
/// valid, because they reach users directly.
#[derive(Debug, Error)]
pub enum CoreError {
    /// A name that no registration carries.
    #[error("unknown {kind} `{name}`; valid {kind} names: {valid}")]
    UnknownName {
        /// What was looked up ("loss", "preset", ...).
        kind: &'static str,
        /// The name that was given.
        name: String,
        /// Comma-separated registered names.
        valid: String,
    },
    /// A hyperparameter outside its valid range.
    #[error("invalid {param} = {value}: {rule}")]
    InvalidParam {
        /// Dotted name of the parameter.
        param: String,
        /// The offending value, as text.
        value: String,
        /// The rule it breaks, e.g. "must be >= 1".
        rule: String,
    },
    /// A configuration that cannot be parsed or merged.
    #[error("config error at `{path}`: {message}")]
    Config {
        /// Where in the configuration (dotted path, or a file name).
        path: String,
        /// What went wrong.
        message: String,
    },
    /// An input file (a dataset) that cannot be read or used as it is.
    #[error("{0}")]
    Input(String),
    /// Not enough memory (or another resource) for what was asked: a run-time failure whose
    /// message names the size and the setting to lower.
    #[error("{0}")]
    Resources(String),
    /// Saved weights (a checkpoint, an adapter folder) that cannot be read back: a run-time
    /// failure, not a usage error.
    #[error("{0}")]
    Checkpoint(String),
    /// A collective among data-parallel ranks failed (another rank stopped or died).
    #[error("{0}")]
    Collective(String),
    /// Tensors whose shapes or kinds break a contract.
    #[error("shape error: {0}")]
    Shape(String),
    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A reward program or service failed, timed out or answered malformed data.
    #[error("reward {verifier}: {message}")]
    Reward {
        /// The program or URL.
        verifier: String,
        /// What went wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl CoreError {
    /// Shorthand for [`CoreError::InvalidParam`].
    pub fn invalid(
        param: impl Into<String>,
        value: impl ToString,
        rule: impl Into<String>,
    ) -> Self {
        CoreError::InvalidParam {
            param: param.into(),
            value: value.to_string(),
            rule: rule.into(),
        }
    }

    /// Shorthand for [`CoreError::Config`].
    pub fn config(path: impl Into<String>, message: impl ToString) -> Self {
        CoreError::Config {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
