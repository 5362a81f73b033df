//! What is not valid in one of Nix's formats: [`FormatError`].

use crate::path::NameProblem;

/// A value that is not valid in one of Nix's formats.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{0}")]
    Hash(String),
    #[error("invalid store path {path:?}: {reason}")]
    StorePath { path: String, reason: String },
    /// A store path name that breaks one of Nix's rules, with the rule.
    #[error("invalid store path name {name:?}: {problem}")]
    Name { name: String, problem: NameProblem },
    #[error("NAR {path}: {reason}")]
    Nar { path: String, reason: String },
    #[error("derivation {name:?}: {reason}")]
    Derivation { name: String, reason: String },
    #[error("narinfo: {0}")]
    NarInfo(String),
    #[error("signing key: {0}")]
    Key(String),
}

impl FormatError {
    /// An error of computing a path named `name`: the broken rule when it
    /// is the name that is wrong.
    pub(crate) fn name(name: &str, e: impl std::fmt::Display) -> Self {
        match NameProblem::of(name) {
            Some(problem) => FormatError::Name { name: name.to_owned(), problem },
            None => FormatError::StorePath { path: name.to_owned(), reason: e.to_string() },
        }
    }
}
