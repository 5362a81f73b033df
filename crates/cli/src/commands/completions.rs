//! `drv completions` and `drv man`: shell completion scripts and manual
//! pages, generated from the same command tree that parses the arguments,
//! so they cannot drift from it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};

use crate::printer::Printer;
use crate::Cli;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write one page per command into DIR (drv.1, drv-build.1,
    /// drv-cache-push.1, …) instead of printing drv.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run_completions(args: &CompletionsArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut stdout = printer.stdout();
    clap_complete::generate(args.shell, &mut cmd, "drv", &mut stdout);
    Ok(ExitCode::SUCCESS)
}

pub fn run_man(args: &ManArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir).with_context(|| format!("cannot write manual pages to {}", dir.display()))?;
        }
        None => {
            // Built first: the subcommands' arguments are deferred until
            // then, and the page lists them.
            let mut cmd = cmd.disable_help_subcommand(true);
            cmd.build();
            clap_mangen::Man::new(cmd).render(&mut printer.stdout())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
