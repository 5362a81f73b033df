//! The progress display of `drv build`, as a user sees it: run in a
//! pseudo-terminal (openpty) whose output is rendered into a screen
//! (vt100) while the build runs and after it ends; and, without a
//! terminal, plain lines.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestStore;

const ROWS: u16 = 30;
const COLS: u16 = 110;

/// A body served slowly (about two seconds), so the download is on screen
/// for a while; each connection gets it whole.
struct SlowServer {
    port: u16,
}

const BODY_CHUNK: usize = 16 * 1024;
const BODY_CHUNKS: usize = 16;

impl SlowServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let len = BODY_CHUNK * BODY_CHUNKS;
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
                    let _ = conn.write_all(head.as_bytes());
                    for _ in 0..BODY_CHUNKS {
                        std::thread::sleep(Duration::from_millis(120));
                        if conn.write_all(&[b'x'; BODY_CHUNK]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/payload.bin", self.port)
    }
}

/// A recipe that downloads the slow body, says its phase and sleeps.
fn sleepy_recipe(s: &TestStore, server: &SlowServer) -> PathBuf {
    let body = s.scratch("payload.bin");
    fs::write(&body, vec![b'x'; BODY_CHUNK * BODY_CHUNKS]).unwrap();
    let sri = s.ok(&["hash", "file", "--sri", body.to_str().unwrap()]);
    let dir = s.scratch("recipes");
    common::write_lock(&dir);
    let recipe = dir.join("sleepy.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"sleepy\"\nversion = \"1\"\n[[source]]\nurl = \"{}\"\nsha256 = \"{}\"\n\
             [toolchain]\ndebian = [\"dash\", \"coreutils\"]\n[build]\n\
             script = 'echo \"drv: build phase\"; echo compiling things; sleep 3; echo linking; cp $src $out'\n",
            server.url(),
            sri.trim()
        ),
    )
    .unwrap();
    recipe
}

/// `drv` in a pseudo-terminal: stderr (what the display draws on) is the
/// terminal, stdout a pipe. `watch` sees the screen as it is drawn.
fn run_in_pty(mut cmd: Command, mut watch: impl FnMut(&vt100::Screen)) -> (Output, Vec<u8>) {
    let size = nix::pty::Winsize { ws_row: ROWS, ws_col: COLS, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    cmd.env("TERM", "xterm-256color").env_remove("DRV_LOG_FORMAT");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(pty.slave));
    let mut child = cmd.spawn().unwrap();
    // Our copy of the terminal's other end goes, so reading ends with drv.
    drop(cmd);
    let captured = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let captured = captured.clone();
        let mut master = fs::File::from(pty.master);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the last process holding the terminal has exited.
            while let Ok(n @ 1..) = master.read(&mut buf) {
                captured.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "drv did not finish");
        let mut screen = vt100::Parser::new(ROWS, COLS, 0);
        screen.process(&captured.lock().unwrap());
        watch(screen.screen());
        std::thread::sleep(Duration::from_millis(40));
    }
    let output = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let bytes = captured.lock().unwrap().clone();
    (output, bytes)
}

fn screen_of(bytes: &[u8]) -> String {
    let mut parser = vt100::Parser::new(ROWS, COLS, 0);
    parser.process(bytes);
    parser.screen().contents()
}

/// The final screen's rows (a row as wide as the terminal is not joined
/// to the next, as `contents()` would).
fn rows_of(bytes: &[u8]) -> Vec<String> {
    let mut parser = vt100::Parser::new(ROWS, COLS, 0);
    parser.process(bytes);
    parser.screen().rows(0, COLS).collect()
}

#[test]
fn a_terminal_shows_running_builds_and_downloads_and_keeps_only_the_summary() {
    let s = TestStore::new();
    let server = SlowServer::start();
    let recipe = sleepy_recipe(&s, &server);
    let mut cmd = s.cmd();
    cmd.current_dir(s.dir.path()).args(["build", "-L", recipe.to_str().unwrap()]);
    let (mut saw_phase, mut saw_download, mut saw_counts) = (None, None, false);
    let (output, bytes) = run_in_pty(cmd, |screen| {
        for row in screen.rows(0, COLS) {
            let row = row.as_str();
            if row.contains("sleepy-1") && row.contains("build phase") && !row.contains("sleepy-1>") {
                saw_phase.get_or_insert(row.to_owned());
            }
            // Some bytes arrived, of the size the server said, at a rate.
            if row.contains("payload.bin") && row.contains("/256.00 KiB") && !row.contains(" 0 B/") && row.contains("/s") {
                saw_download.get_or_insert(row.to_owned());
            }
            saw_counts |= row.contains("built ") && row.contains("running");
        }
    });
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(output.status.success(), "drv build failed:\n{}", screen_of(&bytes));
    assert!(String::from_utf8_lossy(&output.stdout).contains("-sleepy-1"), "no output path on stdout");

    // While it ran: the build with its phase and elapsed time, the download
    // with bytes and rate, and the counts.
    let phase = saw_phase.unwrap_or_else(|| panic!("the running build and its phase never showed:\n{text:?}"));
    assert!(phase.contains("s "), "no elapsed time in {phase:?}");
    let download = saw_download.unwrap_or_else(|| panic!("the download never showed:\n{text:?}"));
    assert!(download.contains("KiB"), "no byte count in {download:?}");
    assert!(saw_counts, "the counts line never showed");

    // At the end: log lines (-L) whole, above the summary; no progress line left.
    let screen = screen_of(&bytes);
    let rows = rows_of(&bytes);
    let rows: Vec<&str> = rows.iter().map(|r| r.trim_end()).filter(|r| !r.is_empty()).collect();
    let last = rows.last().expect("an empty screen");
    assert!(last.starts_with("finished in ") && last.contains("built ") && last.contains("failed 0"), "{screen}");
    for needed in ["sleepy-1> compiling things", "sleepy-1> linking"] {
        assert!(rows.contains(&needed), "{needed:?} is not a whole line of the final screen:\n{screen}");
    }
    for row in &rows {
        assert!(
            row.starts_with("finished in ") || row.contains("> ") || row.starts_with("note: ") || row.starts_with("warning: "),
            "a stray line is left on the screen: {row:?}\n{screen}"
        );
    }
    // Nothing is drawn after the summary: its text, a newline, the end.
    let tail = &text[text.rfind("finished in ").unwrap()..];
    assert!(tail.ends_with("\r\n") && tail.lines().count() == 1 && !tail.contains('\x1b'), "after the summary: {tail:?}");
}

#[test]
fn without_a_terminal_progress_is_plain_lines() {
    let s = TestStore::new();
    let server = SlowServer::start();
    let recipe = sleepy_recipe(&s, &server);
    let out = s.cmd().current_dir(s.dir.path()).args(["build", recipe.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!out.stderr.contains(&0x1b), "an escape sequence in a pipe:\n{err:?}");
    assert!(err.lines().any(|l| l == "building sleepy-1"), "{err}");
    assert!(err.lines().any(|l| l.starts_with("built sleepy-1 in ") && l.ends_with('s')), "{err}");
    assert!(err.lines().any(|l| l.starts_with("downloading ") && l.contains("payload.bin")), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("finished in ") && last.ends_with("already valid 0, failed 0"), "{err}");
}

#[test]
fn log_format_lines_keeps_a_terminal_free_of_escapes() {
    let s = TestStore::new();
    let dir = s.scratch("recipes");
    common::write_lock(&dir);
    let recipe = dir.join("quick.toml");
    fs::write(
        &recipe,
        "name = \"quick\"\nversion = \"1\"\n[toolchain]\ndebian = [\"dash\", \"coreutils\"]\n[build]\nscript = 'echo hi > $out'\n",
    )
    .unwrap();
    let mut cmd = s.cmd();
    cmd.current_dir(s.dir.path()).args(["--log-format", "lines", "build", "-L", recipe.to_str().unwrap()]);
    let (output, bytes) = run_in_pty(cmd, |_| {});
    let text = String::from_utf8_lossy(&bytes);
    assert!(output.status.success(), "{text}");
    assert!(!bytes.contains(&0x1b), "an escape sequence with --log-format lines:\n{text:?}");
    assert!(text.contains("building quick-1\r\n") && text.contains("built quick-1 in "), "{text}");
}
