//! The help of every command, as a user reads it: `drv … --help` for each
//! command and subcommand is a snapshot (tests/snapshots/), so a change to
//! any help text shows in review; the completion scripts and the manual
//! page are generated and checked to cover the commands.
//!
//! The command tree is discovered from the help itself ("Commands:"), so
//! a new command gets a snapshot without touching this file.

use std::process::{Command, Output};

fn drv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drv"))
        .args(args)
        // The help shows these variables' values when they are set.
        .env_remove("DRV_ROOT")
        .env_remove("DRV_STORE_DIR")
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .expect("run drv")
}

fn stdout_of(args: &[&str]) -> String {
    let out = drv(args);
    assert!(
        out.status.success(),
        "drv {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The subcommands a help text lists under "Commands:" (without `help`),
/// each with its summary.
fn listing(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in help.lines().skip_while(|l| *l != "Commands:").skip(1).take_while(|l| l.starts_with("  ")) {
        if line.starts_with("   ") {
            // A wrapped summary goes on further indented.
            if let Some((_, about)) = out.last_mut() {
                about.push(' ');
                about.push_str(line.trim());
            }
        } else if let Some((name, about)) = line.trim_start().split_once(' ') {
            out.push((name.to_string(), about.trim().to_string()));
        }
    }
    out.retain(|(name, _)| name != "help");
    out
}

fn subcommands(help: &str) -> Vec<String> {
    listing(help).into_iter().map(|(name, _)| name).collect()
}

/// The first paragraph of a help text: the command's summary.
fn summary(help: &str) -> String {
    help.split("\n\n").next().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn help_of_every_command() {
    let mut seen = Vec::new();
    // (path of subcommand names, the summary its parent lists for it)
    let mut queue: Vec<(Vec<String>, Option<String>)> = vec![(Vec::new(), None)];
    while let Some((path, listed)) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = stdout_of(&args);
        let name = std::iter::once("drv").chain(path.iter().map(String::as_str)).collect::<Vec<_>>().join("-");

        // Written for a user: the description is the command's own (the
        // one its parent lists), and examples follow the options.
        if let Some(listed) = listed {
            assert_eq!(summary(&help), listed, "{name} --help does not begin with its summary");
        }
        assert!(help.contains("\nExamples:\n  "), "{name} --help shows no example:\n{help}");

        insta::assert_snapshot!(name.as_str(), help);

        for (cmd, about) in listing(&help) {
            let mut sub = path.clone();
            sub.push(cmd);
            queue.push((sub, Some(about)));
        }
        seen.push(name);
    }
    for expected in ["drv", "drv-build", "drv-gc", "drv-cache-push", "drv-store-verify", "drv-completions", "drv-man"] {
        assert!(seen.iter().any(|s| s == expected), "no help for {expected}: {seen:?}");
    }
}

#[test]
fn completion_scripts_cover_the_commands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        for word in ["build", "gc", "cache", "push", "keep-going"] {
            assert!(script.contains(word), "the {shell} completions do not mention {word}");
        }
    }
    assert!(!drv(&["completions", "tcsh"]).status.success());
}

#[test]
fn man_page_names_every_command() {
    let page = stdout_of(&["man"]);
    // clap_mangen opens with roff's quote definitions, then the title.
    let title = page.lines().find(|l| !l.starts_with(".ie") && !l.starts_with(".el")).unwrap_or("");
    assert!(title.starts_with(".TH drv 1"), "no .TH header: {title:?}");
    let top = stdout_of(&["--help"]);
    let commands = subcommands(&top);
    assert!(commands.len() > 10, "{commands:?}");
    for cmd in commands {
        // roff escapes the hyphens of `show-derivation`.
        let roff = cmd.replace('-', "\\-");
        assert!(page.contains(&format!("drv\\-{roff}")), "the man page does not name {cmd}");
    }

    let dir = tempfile::tempdir().unwrap();
    stdout_of(&["man", "--dir", dir.path().to_str().unwrap()]);
    for file in ["drv.1", "drv-build.1", "drv-cache-push.1", "drv-root-add.1"] {
        let page = std::fs::read_to_string(dir.path().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(page.contains(".TH "), "{file} has no .TH header");
    }
}
