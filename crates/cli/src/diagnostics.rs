//! Recipe and lock-file errors as rustc and cargo show theirs: the message,
//! ` --> file:line:column`, the offending line with the span marked, and
//! the help note (annotate-snippets, the renderer rustc and cargo use).
//! Colored only when stderr is a terminal and `NO_COLOR` is unset.

use std::io::IsTerminal;
use std::ops::Range;
use std::path::Path;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use drv_debian::lock::LockError;
use drv_eval::{Diagnostic, EvalError};

/// A problem at a span of a file's text, whatever layer found it.
struct Located<'a> {
    file: &'a Path,
    text: &'a str,
    span: Range<usize>,
    message: String,
    help: Option<&'a str>,
}

impl<'a> Located<'a> {
    fn of(error: &'a (dyn std::error::Error + 'static)) -> Option<Self> {
        match error.downcast_ref::<EvalError>() {
            Some(EvalError::Recipe(d)) => return Some(Self::of_diagnostic(d)),
            Some(EvalError::Lock(e)) => return Self::of_lock(e),
            _ => {}
        }
        error.downcast_ref::<LockError>().and_then(Self::of_lock)
    }

    fn of_diagnostic(d: &'a Diagnostic) -> Self {
        Self { file: &d.file, text: &d.text, span: d.span.clone(), message: d.message.clone(), help: d.help.as_deref() }
    }

    fn of_lock(e: &'a LockError) -> Option<Self> {
        match e {
            LockError::Syntax { file, message, span, text, .. } => {
                Some(Self { file, text, span: span.clone(), message: message.clone(), help: None })
            }
            LockError::Invalid { file, field, message, span, text, .. } => Some(Self {
                file,
                text,
                span: span.clone(),
                message: format!("{field}: {message}"),
                help: Some(LockError::INVALID_HELP),
            }),
            _ => None,
        }
    }
}

/// Whether diagnostics on stderr are colored: on a terminal, unless
/// `NO_COLOR` is set to anything but the empty string.
pub fn color_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `error` rendered with its source line, when it or a cause in its chain
/// is a recipe or lock-file error that knows its span; the messages of the
/// errors around it (contexts) lead its title. `None` for any other error.
pub fn render(error: &anyhow::Error, color: bool) -> Option<String> {
    let chain: Vec<&(dyn std::error::Error + 'static)> = error.chain().collect();
    let (at, located) = chain.iter().enumerate().find_map(|(i, e)| Some((i, Located::of(*e)?)))?;
    let mut title: Vec<String> = chain[..at].iter().map(|e| e.to_string()).collect();
    title.push(located.message.clone());
    Some(render_located(&located, &title.join(": "), color))
}

fn render_located(l: &Located<'_>, title: &str, color: bool) -> String {
    let path = drv_eval::shown_path(l.file).display().to_string();
    let snippet = Snippet::source(l.text).path(path).fold(true).annotation(AnnotationKind::Primary.span(l.span.clone()));
    let mut group: Group<'_> = Level::ERROR.primary_title(title).element(snippet);
    if let Some(help) = l.help {
        group = group.element(Level::HELP.message(help));
    }
    let renderer = if color { Renderer::styled() } else { Renderer::plain() };
    renderer.render(&[group])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_error_shows_its_line_with_the_span_marked() {
        let text = "name = \"x\"\nversion = \"1\"\nsha265 = \"abc\"\n";
        let d = Diagnostic::at(Path::new("/nowhere/r.toml"), text, 25, "unknown key `sha265`").with_help("did you mean `sha256`?");
        let shown = render(&anyhow::Error::new(EvalError::from(d)), false).unwrap();
        let expected = "\
error: unknown key `sha265`
 --> /nowhere/r.toml:3:1
  |
3 | sha265 = \"abc\"
  | ^^^^^^
  |
  = help: did you mean `sha256`?";
        assert_eq!(shown, expected);
    }

    #[test]
    fn contexts_lead_the_title_and_other_errors_are_not_rendered() {
        let text = "a = 1\n";
        let d = Diagnostic::at(Path::new("/nowhere/r.toml"), text, 4, "not a string");
        let e = anyhow::Error::new(EvalError::from(d)).context("cannot lock");
        let shown = render(&e, false).unwrap();
        assert!(shown.starts_with("error: cannot lock: not a string\n --> /nowhere/r.toml:1:5\n"), "{shown}");
        assert!(render(&anyhow::anyhow!("plain"), false).is_none());
    }

    #[test]
    fn colors_only_when_asked() {
        let d = Diagnostic::at(Path::new("/r.toml"), "x = 1\n", 0, "m");
        let e = anyhow::Error::new(EvalError::from(d));
        assert!(!render(&e, false).unwrap().contains('\x1b'));
        assert!(render(&e, true).unwrap().contains('\x1b'));
    }
}
