//! Evaluation errors. A recipe mistake is a [`Diagnostic`]: the file, the
//! line and column of the offending key or value, what is wrong and, where
//! obvious, the fix.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A problem at a place in a recipe file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    /// The fix, where drv can tell.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at byte offset `offset` of `text` (the file's contents).
    pub fn at(file: &Path, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self { file: file.to_owned(), line, column, message: message.into(), help: None }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", shown(&self.file).display(), self.line, self.column, self.message)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}

/// A path as the user would write it: relative to the working directory
/// when it is below it.
pub(crate) fn shown(path: &Path) -> &Path {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(|p| suffix_of(path, p)))
        .unwrap_or(path)
}

/// `p` is a suffix of `path`; return it with `path`'s lifetime.
fn suffix_of<'a>(path: &'a Path, p: &Path) -> &'a Path {
    let skip = path.as_os_str().len() - p.as_os_str().len();
    Path::new(std::ffi::OsStr::from_bytes(&path.as_os_str().as_bytes()[skip..]))
}

/// What can stop an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Recipe(Box<Diagnostic>),
    #[error("dependency cycle: {}", .0.iter().map(|p| shown(p).display().to_string()).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<PathBuf>),
    #[error("cannot read recipe {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Lock(Box<drv_debian::lock::LockError>),
    #[error(transparent)]
    Store(#[from] drv_store::StoreError),
    #[error(transparent)]
    Format(#[from] drv_store::FormatError),
}

impl From<Diagnostic> for EvalError {
    fn from(d: Diagnostic) -> Self {
        EvalError::Recipe(Box::new(d))
    }
}
