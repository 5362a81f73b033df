//! How progress looks. On a terminal, a live display (indicatif): one line
//! per running build (name, phase, elapsed time, last log line), one per
//! transfer (bytes, rate), and a line of counts at the bottom; when the
//! command ends the live lines are cleared and a summary stays. Otherwise
//! (a pipe, a log file, `--log-format lines`), plain lines that never hold
//! an escape sequence. `-L` prints every build log line, above the live
//! lines on a terminal.

use std::collections::BTreeMap;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use drv_formats::StorePath;
use drv_realise::Reporter;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::printer::{Printer, Progress};

/// How `drv` shows progress (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// The live display when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines, one per event, never an escape sequence.
    Lines,
    /// The live display, even when stderr is not a terminal.
    Bar,
}

/// What happened in one realisation, for the summary line.
pub struct Summary {
    pub built: usize,
    pub substituted: usize,
    pub already_valid: usize,
    pub failed: usize,
}

pub struct TerminalReporter {
    print_logs: bool,
    printer: Printer,
    live: Option<Live>,
    state: Mutex<State>,
    started: Instant,
}

/// The live display: the bars, and the counts line at the bottom.
struct Live {
    multi: MultiProgress,
    counts: ProgressBar,
}

#[derive(Default)]
struct State {
    running: BTreeMap<String, Running>,
    transfers: BTreeMap<String, ProgressBar>,
    builds_total: usize,
    builds_done: usize,
    substitutions_total: usize,
    substitutions_done: usize,
    failed: usize,
}

struct Running {
    started: Instant,
    bar: Option<ProgressBar>,
    phase: Option<String>,
    last: String,
}

impl Running {
    /// What its line says after the name and time: `build phase: <last line>`.
    fn message(&self) -> String {
        let phase = self.phase.as_deref().map(|p| format!("{p} phase")).unwrap_or_default();
        let sep = if phase.is_empty() || self.last.is_empty() { "" } else { ": " };
        match (phase.is_empty(), self.last.is_empty()) {
            (true, true) => "starting".to_owned(),
            _ => format!("{phase}{sep}{}", self.last),
        }
    }
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

/// `build` of a builder's `drv: build phase` line (drv's recipes print one
/// at the start of each phase).
fn phase_of(line: &str) -> Option<&str> {
    line.trim().strip_prefix("drv: ")?.strip_suffix(" phase").filter(|p| !p.is_empty() && !p.contains(' '))
}

const TICK: Duration = Duration::from_millis(120);
/// Build lines drawn at once; more running builds are only counted (a
/// toolchain's dozens of `.deb` downloads must not fill the screen).
const MAX_BUILD_LINES: usize = 10;
const SPINNER: &str = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("a valid progress template").tick_chars(SPINNER)
}

fn build_style() -> ProgressStyle {
    style("{spinner:.cyan} {prefix:.bold} {elapsed:>4} {wide_msg:.dim}")
}

fn download_style(total: Option<u64>) -> ProgressStyle {
    match total {
        Some(_) => style("{spinner:.blue} {prefix:.bold} {bytes}/{total_bytes} {binary_bytes_per_sec} {wide_bar:.blue/dim}")
            .progress_chars("━╸ "),
        None => style("{spinner:.blue} {prefix:.bold} {bytes} {binary_bytes_per_sec}"),
    }
}

impl TerminalReporter {
    /// The printer chooses between the live display, lines and nothing
    /// (`--quiet`); `print_logs` is `-L`.
    pub fn new(print_logs: bool, printer: Printer) -> Self {
        let live = (printer.progress() == Progress::Live).then(|| {
            // Drawn on stderr even when it is not a terminal (`--log-format bar`).
            let target = ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), 15);
            let multi = MultiProgress::with_draw_target(target);
            let counts = multi.add(ProgressBar::new_spinner().with_style(style("{spinner:.green} {elapsed:>4} {wide_msg}")));
            counts.enable_steady_tick(TICK);
            Live { multi, counts }
        });
        Self { print_logs, printer, live, state: Mutex::new(State::default()), started: Instant::now() }
    }

    /// A line that stays: above the live lines, or on its own.
    fn line(&self, text: &str) {
        match &self.live {
            Some(live) => live.multi.suspend(|| self.printer.info(text)),
            None => self.printer.info(text),
        }
    }

    /// Redraw the counts line from `state`.
    fn counts(&self, state: &State) {
        let Some(live) = &self.live else { return };
        let mut parts = Vec::new();
        if state.builds_total > 0 {
            parts.push(format!("built {}/{}", state.builds_done, state.builds_total));
        }
        if state.substitutions_total > 0 {
            parts.push(format!("substituted {}/{}", state.substitutions_done, state.substitutions_total));
        }
        let running = state.running.len();
        if running > 0 {
            parts.push(format!("{running} running"));
        }
        if !state.transfers.is_empty() {
            parts.push(format!("{} transferring", state.transfers.len()));
        }
        if state.failed > 0 {
            parts.push(format!("{} failed", state.failed));
        }
        live.counts.set_message(parts.join(" · "));
    }

    /// A new live line, above the counts line.
    fn add_bar(&self, live: &Live, name: &str, style: ProgressStyle, len: Option<u64>) -> ProgressBar {
        let bar = ProgressBar::hidden().with_style(style).with_prefix(name.to_owned());
        if let Some(len) = len {
            bar.set_length(len);
        }
        let bar = live.multi.insert_before(&live.counts, bar);
        bar.enable_steady_tick(TICK);
        bar
    }

    fn remove_bar(&self, bar: &ProgressBar) {
        if let Some(live) = &self.live {
            bar.finish_and_clear();
            live.multi.remove(bar);
        }
    }

    /// Give the freed line to the longest-running build not shown.
    fn show_next(&self, state: &mut State) {
        let Some(live) = &self.live else { return };
        // A build whose download has a line of its own is shown by that.
        let transfers = &state.transfers;
        let next = state
            .running
            .iter_mut()
            .filter(|(name, r)| r.bar.is_none() && !transfers.contains_key(*name))
            .min_by_key(|(_, r)| r.started);
        if let Some((name, r)) = next {
            let bar = self.add_bar(live, name, build_style(), None);
            bar.set_message(r.message());
            r.bar = Some(bar);
        }
    }

    /// End the display: clear the live lines, then print the summary (if
    /// given). Nothing drawn stays behind but the summary.
    pub fn finish(&self, summary: Option<Summary>) {
        self.clear();
        if let Some(s) = summary {
            self.printer.info(format_args!(
                "finished in {:.1}s: built {}, substituted {}, already valid {}, failed {}",
                self.started.elapsed().as_secs_f64(),
                s.built,
                s.substituted,
                s.already_valid,
                s.failed
            ));
        }
    }

    fn clear(&self) {
        let Some(live) = &self.live else { return };
        let mut state = self.state.lock().unwrap();
        for r in std::mem::take(&mut state.running).into_values() {
            if let Some(bar) = r.bar {
                self.remove_bar(&bar);
            }
        }
        for bar in std::mem::take(&mut state.transfers).into_values() {
            self.remove_bar(&bar);
        }
        live.counts.finish_and_clear();
        let _ = live.multi.clear();
    }
}

impl Drop for TerminalReporter {
    /// An error ends the command early: its message must not be drawn over.
    fn drop(&mut self) {
        self.clear();
    }
}

impl Reporter for TerminalReporter {
    fn builds_planned(&self, builds: usize, _already_valid: usize) {
        let mut s = self.state.lock().unwrap();
        s.builds_total += builds;
        self.counts(&s);
    }
    fn substitutions_planned(&self, count: usize) {
        let mut s = self.state.lock().unwrap();
        s.substitutions_total += count;
        self.counts(&s);
    }
    fn substitution_finished(&self, _path: &StorePath, ok: bool) {
        let mut s = self.state.lock().unwrap();
        if ok {
            s.substitutions_done += 1;
        }
        self.counts(&s);
    }
    fn download_started(&self, what: &str, url: &str, total: Option<u64>) {
        let mut s = self.state.lock().unwrap();
        let Some(live) = &self.live else {
            drop(s);
            let size = total.map(|t| format!(" ({})", human(t))).unwrap_or_default();
            self.line(&format!("downloading {url}{size}"));
            return;
        };
        // A fixed-output build is its download: its line shows the bytes.
        if let Some(bar) = s.running.get(what).and_then(|r| r.bar.clone()) {
            bar.set_style(download_style(total));
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(0);
        } else {
            let bar = self.add_bar(live, what, download_style(total), total);
            if let Some(old) = s.transfers.insert(what.to_owned(), bar) {
                self.remove_bar(&old);
            }
        }
        self.counts(&s);
    }
    fn download_progress(&self, what: &str, bytes: u64) {
        if self.live.is_none() {
            return;
        }
        let s = self.state.lock().unwrap();
        if let Some(bar) = s.transfers.get(what).or_else(|| s.running.get(what).and_then(|r| r.bar.as_ref())) {
            bar.inc(bytes);
        }
    }
    fn download_finished(&self, what: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some(bar) = s.transfers.remove(what) {
            self.remove_bar(&bar);
        }
        self.counts(&s);
    }
    fn upload_started(&self, what: &str, dest: &str, size: Option<u64>) {
        let mut s = self.state.lock().unwrap();
        let Some(live) = &self.live else {
            drop(s);
            let size = size.map(|b| format!(" ({b} bytes)")).unwrap_or_default();
            self.line(&format!("uploading {what}{size} to {dest}"));
            return;
        };
        let bar = self.add_bar(live, what, style("{spinner:.magenta} {prefix:.bold} {elapsed:>4} {wide_msg}"), None);
        bar.set_message(format!("uploading {}", size.map(human).unwrap_or_default()));
        if let Some(old) = s.transfers.insert(what.to_owned(), bar) {
            self.remove_bar(&old);
        }
        self.counts(&s);
    }
    fn upload_finished(&self, what: &str) {
        self.download_finished(what);
    }
    fn build_started(&self, drv: &StorePath) {
        let name = short(drv);
        let mut s = self.state.lock().unwrap();
        let shown = s.running.values().filter(|r| r.bar.is_some()).count();
        let bar = self.live.as_ref().filter(|_| shown < MAX_BUILD_LINES).map(|live| {
            let bar = self.add_bar(live, &name, build_style(), None);
            bar.set_message("starting");
            bar
        });
        s.running.insert(name.clone(), Running { started: Instant::now(), bar, phase: None, last: String::new() });
        self.counts(&s);
        drop(s);
        if self.live.is_none() {
            self.line(&format!("building {name}"));
        }
    }
    fn build_log_line(&self, drv: &StorePath, line: &str) {
        let name = short(drv);
        let mut s = self.state.lock().unwrap();
        if let Some(r) = s.running.get_mut(&name) {
            match phase_of(line) {
                Some(phase) => r.phase = Some(phase.to_owned()),
                None => r.last = line.trim_end().to_owned(),
            }
            if let Some(bar) = &r.bar {
                bar.set_message(r.message());
            }
        }
        drop(s);
        if self.print_logs {
            self.line(&format!("{name}> {line}"));
        }
    }
    fn build_finished(&self, drv: &StorePath, success: bool) {
        let name = short(drv);
        let mut s = self.state.lock().unwrap();
        let running = s.running.remove(&name);
        s.builds_done += 1;
        if !success {
            s.failed += 1;
        }
        if let Some(bar) = running.as_ref().and_then(|r| r.bar.as_ref()) {
            self.remove_bar(bar);
            self.show_next(&mut s);
        }
        self.counts(&s);
        drop(s);
        let took = running.map(|r| format!(" in {:.1}s", r.started.elapsed().as_secs_f64())).unwrap_or_default();
        // On the live display a finished build just leaves; a failure stays.
        if self.live.is_none() {
            let verb = if success { "built" } else { "failed to build" };
            self.line(&format!("{verb} {name}{took}"));
        } else if !success {
            self.line(&format!("failed to build {name}{took}"));
        }
    }
    fn message(&self, text: &str) {
        self.line(text);
    }
}

/// Plain lines on stderr for commands that show no live display: the
/// library's messages (retries, fallbacks) and, when `transfers`, the
/// start of each download and upload. Nothing with `--quiet`.
pub struct LineReporter {
    printer: Printer,
    transfers: bool,
}

impl LineReporter {
    /// Messages only (`drv prefetch`, `drv lock`: their downloads are the
    /// command itself).
    pub fn messages(printer: Printer) -> Self {
        Self { printer, transfers: false }
    }

    /// Messages and transfers (`drv cache push`, `drv cache fetch`).
    pub fn transfers(printer: Printer) -> Self {
        Self { printer, transfers: true }
    }
}

impl Reporter for LineReporter {
    fn download_started(&self, what: &str, url: &str, _total: Option<u64>) {
        if self.transfers {
            self.printer.info(format_args!("copying {what} ({url})"));
        }
    }
    fn upload_started(&self, what: &str, dest: &str, size: Option<u64>) {
        if self.transfers {
            let size = size.map(|b| format!(" ({b} bytes)")).unwrap_or_default();
            self.printer.info(format_args!("uploading {what}{size} to {dest}"));
        }
    }
    fn message(&self, text: &str) {
        self.printer.info(text);
    }
}

/// What shows the progress of a transfer command (`drv cache push`,
/// `drv cache fetch`): the live display on a terminal (cleared when
/// dropped), else [`LineReporter`]'s lines.
pub fn transfer_reporter(printer: Printer) -> Box<dyn Reporter> {
    match printer.progress() {
        Progress::Live => Box::new(TerminalReporter::new(false, printer)),
        Progress::Lines | Progress::Hidden => Box::new(LineReporter::transfers(printer)),
    }
}

#[cfg(test)]
mod tests {
    use super::phase_of;

    #[test]
    fn phases_are_read_from_the_builders_lines() {
        assert_eq!(phase_of("drv: build phase"), Some("build"));
        assert_eq!(phase_of("drv: strip phase\n"), Some("strip"));
        assert_eq!(phase_of("drv: a b phase"), None);
        assert_eq!(phase_of("building phase"), None);
    }
}
