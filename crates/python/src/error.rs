//! What can be wrong in a lock file.

/// A lock file drv cannot use, with where: the file and line for line
/// formats (requirements files), the package and field for TOML ones (the
/// TOML parser's own errors carry line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockFileError {
    #[error("{file}:{line}: {message}")]
    Line { file: String, line: usize, message: String },
    #[error("{file}: {message}")]
    Toml { file: String, message: String },
    #[error("{file}: package {package:?}: `{field}`: {message}")]
    Field { file: String, package: String, field: &'static str, message: String },
    #[error("{file}: {message}")]
    File { file: String, message: String },
}
