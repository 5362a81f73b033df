//! `drv run` and `drv shell`: use what recipes build.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _};
use clap::Args;
use drv_store::realise::read_derivation;
use drv_store::{LocalStore, StorePath};

use super::build::{realise, resolve_targets, BuildArgs};
use crate::Cli;

#[derive(Args)]
pub struct RunArgs {
    /// The recipe whose `main` program to run.
    recipe: String,
    /// Arguments for the program.
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Args)]
pub struct ShellArgs {
    /// Recipes whose closures the shell gets.
    #[arg(required = true)]
    recipes: Vec<String>,
    /// Run this command (with `sh -c`) instead of an interactive shell.
    #[arg(short, long)]
    command: Option<String>,
}

/// Build the recipes (quietly unless something must be built) and return
/// each one's `out` path.
fn build_outputs(cli: &Cli, store: &mut LocalStore, recipes: &[String]) -> anyhow::Result<Vec<StorePath>> {
    let args = BuildArgs::quiet_for(recipes.to_vec());
    let targets = resolve_targets(store, recipes, false)?;
    realise(cli, store, &targets, &args)?;
    targets
        .iter()
        .map(|d| Ok(read_derivation(store, d)?.outputs()?["out"].path.clone()))
        .collect()
}

fn exec(cli: &Cli, store: &LocalStore, mut cmd: Command) -> anyhow::Result<ExitCode> {
    let _view = crate::store_view::apply(&mut cmd, store.real_store_dir(), Path::new(store.store_dir().as_str()))?;
    let status = cmd.status().with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    let _ = cli;
    Ok(match status.code() {
        Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
        None => ExitCode::FAILURE,
    })
}

pub fn run_run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    if !args.recipe.ends_with(".toml") {
        bail!("drv run takes a recipe file (.toml)");
    }
    let mut store = cli.open_store()?;
    let eval = super::eval::evaluate_summary(&mut store, Path::new(&args.recipe))?;
    let main = eval.main.clone().with_context(|| format!("{} has no `main` program to run", args.recipe))?;
    let out = build_outputs(cli, &mut store, std::slice::from_ref(&args.recipe))?.remove(0);
    store.add_temp_root(&out)?;
    let program = PathBuf::from(store.display(&out)).join(main);
    let mut cmd = Command::new(&program);
    cmd.args(&args.args);
    exec(cli, &store, cmd)
}

pub fn run_shell(cli: &Cli, args: &ShellArgs) -> anyhow::Result<ExitCode> {
    let mut store = cli.open_store()?;
    let outs = build_outputs(cli, &mut store, &args.recipes)?;
    let closure: BTreeSet<StorePath> = store.closure(&outs.iter().cloned().collect())?;
    // The shell protects its closure from the collector while it runs.
    for p in &closure {
        store.add_temp_root(p)?;
    }
    // The recipes' own outputs first, then the rest of their closures.
    let ordered: Vec<&StorePath> = outs.iter().chain(closure.iter().filter(|p| !outs.contains(p))).collect();
    let mut path = Vec::new();
    let mut python_path = Vec::new();
    for p in ordered {
        let real = store.real_path(p);
        let logical = PathBuf::from(store.display(p));
        if real.join("bin").is_dir() {
            path.push(logical.join("bin").display().to_string());
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
    if let Ok(host) = std::env::var("PATH") {
        path.push(host);
    }
    let mut cmd = match &args.command {
        Some(c) => {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(c);
            cmd
        }
        None => Command::new(std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into())),
    };
    cmd.env("PATH", path.join(":"));
    if !python_path.is_empty() {
        cmd.env("PYTHONPATH", python_path.join(":"));
    }
    cmd.env("PYTHONNOUSERSITE", "1");
    cmd.env("DRV_SHELL", "1");
    exec(cli, &store, cmd)
}
