//! Evaluation errors. A recipe mistake is a [`Diagnostic`]: the file, the
//! line and column of the offending key or value, what is wrong and, where
//! obvious, the fix. It keeps the file's text and the byte span of the
//! offending key or value, so a front end can show the line with the span
//! marked (drv's CLI renders it as rustc and cargo render theirs).

use std::fmt;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// The offending bytes of [`Diagnostic::text`]: within it, on char
    /// boundaries, starting at `line` and `column`.
    pub span: Range<usize>,
    /// The file's text as it was parsed (the line is shown from it, not
    /// from a file that may have changed since).
    pub text: Arc<str>,
}

impl Diagnostic {
    /// A diagnostic at byte offset `offset` of `text` (the file's
    /// contents), marking the token that starts there: a quoted string, a
    /// `[table]` header, or the bare word up to a space or `=`.
    pub fn at(file: &Path, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let span = token_at(text, offset);
        Self::spanning(file, text, span, message)
    }

    /// A diagnostic marking the bytes `span` of `text` (a key or value as
    /// the TOML parser located it); trailing blanks are not marked.
    pub fn spanning(file: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let start = floor_char_boundary(text, span.start.min(text.len()));
        let end = floor_char_boundary(text, span.end.clamp(start, text.len()));
        let end = start + text[start..end].trim_end().len();
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
            help: None,
            span: start..end,
            text: Arc::from(text),
        }
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

/// The token of `text` that starts at byte `offset`: a quoted string
/// (to its closing quote), a `[table]` or `[[array]]` header, or the bare
/// word up to a blank, `=`, `,` or a closing bracket; empty at the end of
/// a line or of the text.
fn token_at(text: &str, offset: usize) -> Range<usize> {
    let start = floor_char_boundary(text, offset.min(text.len()));
    let rest = &text[start..];
    let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
    let len = match line.chars().next() {
        Some(q @ ('"' | '\'')) => line[1..].find(q).map_or(line.len(), |i| i + 2),
        Some('[') => line.find(']').map_or(line.len(), |i| if line[i + 1..].starts_with(']') { i + 2 } else { i + 1 }),
        Some(_) => line.find(|c: char| c.is_whitespace() || "=,]}".contains(c)).unwrap_or(line.len()).max(1),
        None => 0,
    };
    start..start + len
}

/// The largest char boundary of `text` at or below `i`.
fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A path as the user would write it: relative to the working directory
/// when it is below it.
pub fn shown(path: &Path) -> &Path {
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
    /// A Python lock file's packages, as `drv.lock` pins them, cannot make
    /// what a recipe asks for.
    #[error("{}: {message}", shown(file).display())]
    PythonLock { file: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] drv_store::StoreError),
    #[error(transparent)]
    Format(#[from] drv_formats::FormatError),
}

impl From<Diagnostic> for EvalError {
    fn from(d: Diagnostic) -> Self {
        EvalError::Recipe(Box::new(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_marks_the_token_there() {
        let text = "name = \"a b\"\n[build]\nsha265 = 'x'\n[[source]]\nx=1\n";
        let marked = |offset| {
            let d = Diagnostic::at(Path::new("/r.toml"), text, offset, "m");
            (d.line, d.column, &text[d.span])
        };
        assert_eq!(marked(7), (1, 8, "\"a b\""));
        assert_eq!(marked(13), (2, 1, "[build]"));
        assert_eq!(marked(21), (3, 1, "sha265"));
        assert_eq!(marked(30), (3, 10, "'x'"));
        assert_eq!(marked(34), (4, 1, "[[source]]"));
        assert_eq!(marked(45), (5, 1, "x"));
        assert_eq!(marked(text.len() + 5), (6, 1, ""));
    }

    #[test]
    fn a_span_is_kept_without_its_trailing_blanks() {
        let text = "[[source]]\nurl = \"é\"\n\n[build]\n";
        let d = Diagnostic::spanning(Path::new("/r.toml"), text, 11..23, "m");
        assert_eq!((d.line, d.column, &text[d.span]), (2, 1, "url = \"é\""));
    }
}
