//! How progress looks: one status line on a terminal (which builds run,
//! the last line of each one's log, download bytes), plain lines
//! otherwise. `-L` prints every build log line.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::Instant;

use drv_store::{Reporter, StorePath};

pub struct TerminalReporter {
    tty: bool,
    print_logs: bool,
    quiet: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: BTreeMap<String, (Instant, String)>,
    downloads: BTreeMap<String, (u64, Option<u64>)>,
    done: usize,
    status_shown: bool,
}

fn short(drv: &StorePath) -> String {
    drv.name().trim_end_matches(".drv").to_owned()
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

impl TerminalReporter {
    pub fn new(print_logs: bool, quiet: bool) -> Self {
        Self { tty: std::io::stderr().is_terminal(), print_logs, quiet, state: Mutex::new(State::default()) }
    }

    /// Print a line above the status line.
    fn line(&self, state: &mut State, text: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty && state.status_shown {
            let _ = write!(err, "\r\x1b[2K");
            state.status_shown = false;
        }
        let _ = writeln!(err, "{text}");
        self.status(state, &mut err);
    }

    fn status(&self, state: &mut State, err: &mut impl std::io::Write) {
        if !self.tty || self.quiet || (state.running.is_empty() && state.downloads.is_empty()) {
            return;
        }
        let width = terminal_width();
        let mut parts = vec![format!("[{} done, {} running]", state.done, state.running.len())];
        for (name, (_, last)) in &state.running {
            parts.push(format!("{name}: {last}"));
        }
        for (name, (got, total)) in &state.downloads {
            parts.push(match total {
                Some(t) => format!("{name} {}/{}", human(*got), human(*t)),
                None => format!("{name} {}", human(*got)),
            });
        }
        let mut text = parts.join("  ");
        if text.chars().count() > width.saturating_sub(1) {
            text = text.chars().take(width.saturating_sub(2)).collect::<String>() + "…";
        }
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        state.status_shown = true;
    }

    /// Clear the status line (before the command prints its result).
    pub fn finish(&self) {
        let mut state = self.state.lock().unwrap();
        if self.tty && state.status_shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            state.status_shown = false;
        }
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(100)
}

impl Reporter for TerminalReporter {
    fn download_started(&self, what: &str, url: &str, total: Option<u64>) {
        let mut s = self.state.lock().unwrap();
        s.downloads.insert(what.to_owned(), (0, total));
        let size = total.map(|t| format!(" ({})", human(t))).unwrap_or_default();
        self.line(&mut s, &format!("downloading {url}{size}"));
    }
    fn download_progress(&self, what: &str, bytes: u64) {
        let mut s = self.state.lock().unwrap();
        if let Some(d) = s.downloads.get_mut(what) {
            d.0 += bytes;
        }
        if self.tty {
            let mut err = std::io::stderr().lock();
            self.status(&mut s, &mut err);
        }
    }
    fn download_finished(&self, what: &str) {
        let mut s = self.state.lock().unwrap();
        s.downloads.remove(what);
    }
    fn build_started(&self, drv: &StorePath) {
        let mut s = self.state.lock().unwrap();
        s.running.insert(short(drv), (Instant::now(), String::new()));
        self.line(&mut s, &format!("building {}", short(drv)));
    }
    fn build_log_line(&self, drv: &StorePath, line: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some(r) = s.running.get_mut(&short(drv)) {
            r.1 = line.to_owned();
        }
        if self.print_logs {
            self.line(&mut s, &format!("{}> {line}", short(drv)));
        } else if self.tty {
            let mut err = std::io::stderr().lock();
            self.status(&mut s, &mut err);
        }
    }
    fn build_finished(&self, drv: &StorePath, success: bool) {
        let mut s = self.state.lock().unwrap();
        let started = s.running.remove(&short(drv)).map(|(t, _)| t);
        s.done += 1;
        let took = started.map(|t| format!(" in {:.1}s", t.elapsed().as_secs_f64())).unwrap_or_default();
        let verb = if success { "built" } else { "failed to build" };
        self.line(&mut s, &format!("{verb} {}{took}", short(drv)));
    }
    fn message(&self, text: &str) {
        let mut s = self.state.lock().unwrap();
        self.line(&mut s, text);
    }
}
