//! `drv run` and `drv shell`: use what recipes build.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _};
use clap::Args;
use drv_formats::StorePath;
use drv_realise::Derivations;
use drv_store::LocalStore;

use super::build::{realise, resolve_targets, BuildArgs};
use crate::printer::Printer;
use crate::store_view::{self, ClosurePath};
use crate::Cli;

/// The shells `drv shell --isolated` looks for, in this order of
/// preference (each on the closure's PATH, in its order).
const SHELLS: [&str; 3] = ["sh", "bash", "dash"];

#[derive(Args)]
pub struct RunArgs {
    /// The recipe file whose `main` program to run.
    recipe: String,
    /// Run it in a root that holds only its closure (plus /dev, /proc, an empty /tmp, and the
    /// host's name-resolution files and certificates).
    #[arg(long)]
    isolated: bool,
    /// Arguments for the program (after `--`).
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Args)]
pub struct ShellArgs {
    /// Recipe files whose closures the shell gets.
    #[arg(required = true)]
    recipes: Vec<String>,
    /// Run this command (with `sh -c`) instead of an interactive shell.
    #[arg(short, long)]
    command: Option<String>,
    /// Run the shell in a root that holds only the closures (plus /dev, /proc, an empty /tmp,
    /// and the host's name-resolution files and certificates); the shell itself must come from
    /// one of the recipes.
    #[arg(long)]
    isolated: bool,
}

/// Build the recipes (quietly unless something must be built) and return
/// each one's `out` path.
fn build_outputs(cli: &Cli, store: &mut LocalStore, recipes: &[String], printer: Printer) -> anyhow::Result<Vec<StorePath>> {
    let (targets, derivations) = resolve_targets(store, recipes, false)?;
    build_targets(cli, store, recipes, &targets, &derivations, printer)
}

/// Build the evaluated `targets` (of `recipes`) quietly unless something
/// must be built; each one's `out` path.
fn build_targets(
    cli: &Cli,
    store: &mut LocalStore,
    recipes: &[String],
    targets: &[StorePath],
    derivations: &Derivations,
    printer: Printer,
) -> anyhow::Result<Vec<StorePath>> {
    let args = BuildArgs::quiet_for(recipes.to_vec());
    let result = realise(cli, store, targets, derivations, &args, printer)?;
    targets
        .iter()
        .map(|d| {
            let outputs = &result.result(d).context("a target has no build result")?.outputs;
            Ok(outputs.get("out").with_context(|| format!("{} has no output `out`", store.display(d)))?.clone())
        })
        .collect()
}

/// Run `cmd` and pass its exit status on. With `isolated`, in a root that
/// holds only those store paths (a closure); otherwise where the store's
/// paths resolve, whatever `--root` holds it.
fn exec(store: &LocalStore, mut cmd: Command, isolated: Option<&BTreeSet<StorePath>>) -> anyhow::Result<ExitCode> {
    let logical_store = Path::new(store.store_dir().as_str());
    let _view = match isolated {
        Some(closure) => {
            let paths: Vec<ClosurePath> = closure
                .iter()
                .map(|p| ClosurePath { real: store.real_path(p), logical: PathBuf::from(store.display(p)) })
                .collect();
            cmd.env("TMPDIR", "/tmp");
            store_view::isolate(&mut cmd, logical_store, &paths)?
        }
        None => store_view::apply(&mut cmd, store.real_store_dir(), logical_store)?,
    };
    let status = cmd.status().with_context(|| {
        let place = if isolated.is_some() { " in an isolated root" } else { "" };
        format!("cannot run {:?}{place}", cmd.get_program())
    })?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
        None => ExitCode::FAILURE,
    })
}

pub fn run_run(cli: &Cli, args: &RunArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    if !args.recipe.ends_with(".toml") {
        bail!("drv run takes a recipe file (.toml)");
    }
    let mut store = cli.open_store()?;
    // Evaluated once: the build takes the derivations this evaluation made.
    let eval = super::eval::evaluate_summary(&mut store, Path::new(&args.recipe))?;
    let main = eval.main.clone().with_context(|| format!("{} has no `main` program to run", args.recipe))?;
    let derivations = Derivations::from_evaluated(eval.derivations);
    let recipes = std::slice::from_ref(&args.recipe);
    let out = build_targets(cli, &mut store, recipes, &[eval.root], &derivations, printer)?.remove(0);
    store.add_temp_root(&out)?;
    let program = PathBuf::from(store.display(&out)).join(main);
    let mut cmd = Command::new(&program);
    cmd.args(&args.args);
    let closure = if args.isolated { Some(store.closure(&BTreeSet::from([out]))?) } else { None };
    exec(&store, cmd, closure.as_ref())
}

pub fn run_shell(cli: &Cli, args: &ShellArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let mut store = cli.open_store()?;
    let outs = build_outputs(cli, &mut store, &args.recipes, printer)?;
    let closure: BTreeSet<StorePath> = store.closure(&outs.iter().cloned().collect())?;
    // The shell protects its closure from the collector while it runs.
    for p in &closure {
        store.add_temp_root(p)?;
    }
    // The recipes' own outputs first, then the rest of their closures.
    let ordered: Vec<&StorePath> = outs.iter().chain(closure.iter().filter(|p| !outs.contains(p))).collect();
    let mut path = Vec::new();
    let mut python_path = Vec::new();
    // With --isolated the shell is the first `sh`, `bash` or `dash` on
    // that PATH: nothing of the host exists inside.
    let mut shells: [Option<PathBuf>; 3] = [None, None, None];
    for p in ordered {
        let real = store.real_path(p);
        let logical = PathBuf::from(store.display(p));
        if real.join("bin").is_dir() {
            path.push(logical.join("bin").display().to_string());
            for (found, name) in shells.iter_mut().zip(SHELLS) {
                // An entry, not its target: a link to another store path
                // resolves inside the root, not necessarily here.
                if found.is_none() && std::fs::symlink_metadata(real.join("bin").join(name)).is_ok() {
                    *found = Some(logical.join("bin").join(name));
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(real.join("lib")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("python3") && e.path().join("site-packages").is_dir() {
                    python_path.push(logical.join("lib").join(name).join("site-packages").display().to_string());
                }
            }
        }
    }
    let shell = if args.isolated {
        let Some(shell) = shells.into_iter().flatten().next() else {
            bail!(
                "the closure of {} holds no shell (no bin/sh, bin/bash or bin/dash): drv shell --isolated \
                 needs one; pass a recipe that provides one too",
                args.recipes.join(" ")
            );
        };
        Some(shell)
    } else {
        // The host's PATH after the closure's (it does not exist in an
        // isolated root).
        if let Ok(host) = std::env::var("PATH") {
            path.push(host);
        }
        None
    };
    let mut cmd = match &args.command {
        Some(c) => {
            let mut cmd = Command::new(shell.unwrap_or_else(|| "/bin/sh".into()));
            cmd.arg("-c").arg(c);
            cmd
        }
        None => Command::new(shell.unwrap_or_else(|| std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into()).into())),
    };
    cmd.env("PATH", path.join(":"));
    if !python_path.is_empty() {
        cmd.env("PYTHONPATH", python_path.join(":"));
    }
    cmd.env("PYTHONNOUSERSITE", "1");
    cmd.env("DRV_SHELL", "1");
    exec(&store, cmd, args.isolated.then_some(&closure))
}
