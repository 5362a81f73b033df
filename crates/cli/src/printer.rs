//! Where and whether `drv` prints. One [`Printer`], made once in `main`
//! from the global flags (`-q`, `-v`, `--log-format`), is handed to every
//! command, and every command prints through it:
//!
//! - **results** go to stdout: what a script reads (store paths, hashes,
//!   JSON documents, NAR streams). They are printed even with `--quiet`,
//!   since they are what was asked for. In JSON mode (a command's `--json`,
//!   see [`Printer::with_json`]) stdout holds the JSON document only.
//! - **messages** go to stderr: summaries and notes ([`Printer::info`],
//!   hidden by `--quiet`), details ([`Printer::detail`], shown only with
//!   `-v`), warnings and errors (always shown: they explain an outcome).
//! - **progress** ([`Printer::progress`]) is a live display on a terminal,
//!   plain lines in a log, or nothing with `--quiet`; the reporter
//!   (`reporter.rs`) draws it as this says.
//!
//! Writes to stdout return their error, so that a reader that went away
//! (`drv … | head`) ends the command quietly in `main`; writes to stderr
//! ignore theirs, since there is nowhere left to say that stderr failed.

use std::fmt::Display;
use std::io::{self, IsTerminal as _, Write as _};
use std::process::ExitCode;

use crate::reporter::LogFormat;

/// How much `drv` says on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q`: results, warnings and errors only.
    Quiet,
    /// Results, progress, summaries, warnings and errors.
    Normal,
    /// `-v`: also the details (each derivation's outcome, …).
    Verbose,
}

/// How progress is shown, as [`Printer::progress`] decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (`--quiet`).
    Hidden,
    /// One plain line per event, never an escape sequence (a log, a pipe).
    Lines,
    /// The live display (indicatif) on stderr.
    Live,
}

/// The output policy of one `drv` invocation. Cheap to copy: commands
/// take it by value and derive their JSON mode from it.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    verbosity: Verbosity,
    log_format: LogFormat,
    json: bool,
}

impl Printer {
    pub fn new(verbosity: Verbosity, log_format: LogFormat) -> Self {
        Self { verbosity, log_format, json: false }
    }

    /// This printer in JSON mode when `json` (a command's `--json`): the
    /// command's result is one JSON document ([`Printer::json`]), and text
    /// results ([`Printer::result`]) are dropped so they cannot corrupt it.
    /// Messages on stderr are unchanged.
    #[must_use]
    pub fn with_json(self, json: bool) -> Self {
        Self { json, ..self }
    }

    pub fn is_json(self) -> bool {
        self.json
    }

    /// How to show progress: nothing with `--quiet`; otherwise as
    /// `--log-format` says, `auto` meaning the live display when stderr is
    /// a terminal (and not a dumb one) and lines otherwise.
    pub fn progress(self) -> Progress {
        if self.verbosity == Verbosity::Quiet {
            return Progress::Hidden;
        }
        match self.log_format {
            LogFormat::Lines => Progress::Lines,
            LogFormat::Bar => Progress::Live,
            LogFormat::Auto => {
                let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
                if io::stderr().is_terminal() && !dumb {
                    Progress::Live
                } else {
                    Progress::Lines
                }
            }
        }
    }

    /// A result line on stdout (a store path, a hash, a line of a listing).
    /// Printed with `--quiet` too; dropped in JSON mode.
    pub fn result(self, line: impl Display) -> io::Result<()> {
        if self.json {
            return Ok(());
        }
        writeln!(io::stdout().lock(), "{line}")
    }

    /// Result text on stdout as it is, without a newline added (a rendered
    /// graph or report that ends its own lines). Dropped in JSON mode.
    pub fn result_text(self, text: &str) -> io::Result<()> {
        if self.json {
            return Ok(());
        }
        io::stdout().lock().write_all(text.as_bytes())
    }

    /// The JSON document of a command, on one line.
    pub fn json(self, value: &serde_json::Value) -> io::Result<()> {
        writeln!(io::stdout().lock(), "{value}")
    }

    /// The JSON document of a command, indented for people to read.
    pub fn json_pretty(self, value: &serde_json::Value) -> io::Result<()> {
        writeln!(io::stdout().lock(), "{value:#}")
    }

    /// Stdout for a result streamed in pieces (a NAR, a build log, a
    /// completion script, a manual page).
    pub fn stdout(self) -> io::StdoutLock<'static> {
        io::stdout().lock()
    }

    /// A message on stderr (a summary, a note on what was done); hidden by
    /// `--quiet`.
    pub fn info(self, line: impl Display) {
        if self.verbosity >= Verbosity::Normal {
            stderr_line(line);
        }
    }

    /// A detail on stderr, shown only with `-v`.
    pub fn detail(self, line: impl Display) {
        if self.verbosity >= Verbosity::Verbose {
            stderr_line(line);
        }
    }

    /// `warning: MESSAGE` on stderr, shown even with `--quiet`.
    pub fn warn(self, message: impl Display) {
        stderr_line(format_args!("warning: {message}"));
    }

    /// `error: MESSAGE` on stderr, shown even with `--quiet`: something
    /// failed that the exit status reports.
    pub fn error(self, message: impl Display) {
        stderr_line(format_args!("error: {message}"));
    }

    /// A line on stderr that explains a failure (which recipe lacks what),
    /// shown even with `--quiet`.
    pub fn failure(self, line: impl Display) {
        stderr_line(line);
    }

    /// The end of a command that failed with `e`: a closed stdout is the
    /// reader's choice and a success; a recipe or lock-file error shows its
    /// line, as cargo shows them; any other error prints its whole cause
    /// chain on one line.
    pub fn report_error(self, e: &anyhow::Error) -> ExitCode {
        let closed_pipe = e.chain().any(|c| {
            c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
        });
        if closed_pipe {
            return ExitCode::SUCCESS;
        }
        if let Some(shown) = crate::diagnostics::render(e, crate::diagnostics::color_on_stderr()) {
            stderr_line(shown);
            return ExitCode::FAILURE;
        }
        let mut text = format!("error: {e}");
        for cause in e.chain().skip(1) {
            text.push_str(&format!(": {cause}"));
        }
        stderr_line(text);
        ExitCode::FAILURE
    }
}

fn stderr_line(line: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hides_progress_whatever_the_log_format() {
        for format in [LogFormat::Auto, LogFormat::Lines, LogFormat::Bar] {
            assert_eq!(Printer::new(Verbosity::Quiet, format).progress(), Progress::Hidden);
        }
        assert_eq!(Printer::new(Verbosity::Normal, LogFormat::Lines).progress(), Progress::Lines);
        assert_eq!(Printer::new(Verbosity::Verbose, LogFormat::Bar).progress(), Progress::Live);
    }

    #[test]
    fn json_mode_is_per_command_and_keeps_the_verbosity() {
        let p = Printer::new(Verbosity::Verbose, LogFormat::Lines);
        assert!(!p.is_json());
        let j = p.with_json(true);
        assert!(j.is_json());
        assert_eq!(j.verbosity, Verbosity::Verbose);
    }
}
