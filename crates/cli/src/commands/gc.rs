//! `drv gc` and `drv root`: garbage collection and the roots that keep
//! paths alive.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use drv_store::{collect_garbage, parse_size, GcOptions, GcReport};
use drv_realise::Config;
use serde_json::json;

use crate::printer::Printer;
use crate::Cli;

#[derive(Args)]
pub struct GcArgs {
    /// Print the store paths that would be deleted, one per line; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Stop once SIZE bytes are freed (suffixes K, M, G, T: powers of 1024), deleting the
    /// least recently registered paths first.
    #[arg(long, value_name = "SIZE", value_parser = parse_max_freed)]
    max_freed: Option<u64>,
    /// Print the GC roots (`ROOT -> PATH`); delete nothing.
    #[arg(long)]
    print_roots: bool,
    /// Print the live store paths (those the roots keep); delete nothing.
    #[arg(long)]
    print_live: bool,
    /// Print the dead store paths (what a collection would delete); delete nothing.
    #[arg(long)]
    print_dead: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_max_freed(text: &str) -> Result<u64, String> {
    parse_size(text).ok_or_else(|| format!("{text:?} is not a size (bytes, or a number with K, M, G or T)"))
}

#[derive(Subcommand)]
#[command(defer = true)]
pub enum RootCommand {
    /// Keep a store path and its closure alive under a named GC root
    #[command(after_help = "\
Examples:
  drv root add flask-app result
  drv root add zlib /store/…-zlib-1.2.13")]
    Add {
        /// The root's name.
        name: String,
        /// The store path to keep (or a `result` link to it).
        path: String,
    },
    /// Remove a named GC root
    ///
    /// The paths it kept are deleted by the next `drv gc` unless another root keeps them.
    #[command(after_help = "\
Examples:
  drv root remove flask-app")]
    Remove {
        /// The root's name.
        name: String,
    },
    /// List the GC roots
    ///
    /// Prints the named roots and the indirect ones (result links) as `NAME -> PATH`, and the
    /// temporary roots of running drv commands.
    #[command(after_help = "\
Examples:
  drv root list
  drv root list --json")]
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `bytes` for people: `512 B`, `1.20 MiB`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

pub fn run_gc(cli: &Cli, args: &GcArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let printer = printer.with_json(args.json);
    let config = Config::load()?;
    let query_only = args.print_roots || args.print_live || args.print_dead;
    let options = GcOptions {
        dry_run: args.dry_run || query_only,
        max_freed: args.max_freed,
        keep_outputs: config.keep_outputs,
        keep_derivations: config.keep_derivations,
    };
    let mut store = cli.open_store()?;
    let report = collect_garbage(&mut store, &options).context("garbage collection failed")?;
    if args.json {
        print_json(&store, args, &report, printer)?;
    } else {
        if args.print_roots {
            for root in &report.roots {
                printer.result(format_args!("{} -> {}", root.kind, store.display(&root.path)))?;
            }
        }
        if args.print_live {
            for p in &report.live {
                printer.result(p)?;
            }
        }
        if args.print_dead || args.dry_run {
            for p in &report.deleted {
                printer.result(p)?;
            }
        }
    }
    let n = report.deleted.len();
    if options.dry_run {
        printer.info(format_args!("would delete {n} paths, freeing {}", human(report.bytes_freed)));
    } else {
        printer.info(format_args!("deleted {n} paths, freed {}", human(report.bytes_freed)));
    }
    if report.in_use > 0 {
        printer.info(format_args!("kept {} dead paths in use by other processes", report.in_use));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(store: &drv_store::LocalStore, args: &GcArgs, report: &GcReport, printer: Printer) -> anyhow::Result<()> {
    let mut v = json!({
        "dryRun": report.dry_run,
        "deleted": report.deleted,
        "deletedCount": report.deleted.len(),
        "bytesFreed": report.bytes_freed,
        "inUse": report.in_use,
    });
    if args.print_roots {
        v["roots"] = report
            .roots
            .iter()
            .map(|r| json!({"root": r.kind.to_string(), "path": store.display(&r.path)}))
            .collect();
    }
    if args.print_live {
        v["live"] = report.live.iter().cloned().collect();
    }
    printer.json(&v)?;
    Ok(())
}

pub fn run_root(cli: &Cli, cmd: &RootCommand, printer: Printer) -> anyhow::Result<ExitCode> {
    let store = cli.open_store()?;
    match cmd {
        RootCommand::Add { name, path } => {
            let p = store.parse_path_arg(path)?;
            store.add_root(name, &p).with_context(|| format!("cannot add the root {name:?}"))?;
        }
        RootCommand::Remove { name } => {
            store.remove_root(name)?;
        }
        RootCommand::List { json } => {
            let roots = store.roots()?;
            if *json {
                let v: Vec<_> = roots
                    .iter()
                    .map(|r| json!({"root": r.kind.to_string(), "path": store.display(&r.path)}))
                    .collect();
                printer.with_json(true).json(&serde_json::Value::Array(v))?;
            } else {
                for r in &roots {
                    printer.result(format_args!("{} -> {}", r.kind, store.display(&r.path)))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
