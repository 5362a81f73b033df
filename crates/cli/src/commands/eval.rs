//! `drv eval`, `drv show-derivation`, `drv graph`: recipes to derivations.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use drv_eval::Evaluation;
use drv_formats::StorePath;
use drv_store::LocalStore;
use serde_json::json;

use crate::printer::Printer;
use crate::Cli;

#[derive(Args)]
pub struct EvalArgs {
    /// The recipe file (.toml).
    recipe: PathBuf,
    /// Print every derivation of the recipe with its outputs, as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ShowDerivationArgs {
    /// A recipe file (.toml) or a derivation (.drv store path).
    target: String,
    /// Also show the input derivations, recursively.
    #[arg(short, long)]
    recursive: bool,
    /// Print JSON (the only format; accepted as with the other commands).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Json,
}

#[derive(Args)]
pub struct GraphArgs {
    /// The recipe file (.toml).
    recipe: PathBuf,
    /// The output format: Graphviz dot, or JSON.
    #[arg(long, value_enum, default_value = "dot")]
    format: GraphFormat,
}

/// Evaluate a recipe into the store, or remember its unchanged evaluation.
pub fn evaluate_summary(store: &mut LocalStore, recipe: &Path) -> anyhow::Result<drv_eval::EvaluationSummary> {
    Ok(drv_eval::evaluate_cached(recipe, store)?)
}

/// Evaluate a recipe into the store.
pub fn evaluate(store: &mut LocalStore, recipe: &Path) -> anyhow::Result<Evaluation> {
    Ok(drv_eval::evaluate(recipe, store)?)
}

pub fn run_eval(cli: &Cli, args: &EvalArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let printer = printer.with_json(args.json);
    let mut store = cli.open_store()?;
    let eval = evaluate(&mut store, &args.recipe)?;
    if args.json {
        let mut all = serde_json::Map::new();
        for p in eval.build_order() {
            let (drv, node) = &eval.derivations[&p];
            let outputs: serde_json::Map<String, serde_json::Value> =
                drv.outputs().iter().map(|(k, o)| (k.clone(), json!(store.display(&o.path)))).collect();
            all.insert(store.display(&p), json!({ "name": drv.name(), "recipe": node.recipe, "outputs": outputs }));
        }
        printer.json_pretty(&json!({
            "drvPath": store.display(&eval.root),
            "tests": eval.tests.iter().map(|t| store.display(t)).collect::<Vec<_>>(),
            "derivations": all,
        }))?;
    } else {
        printer.result(store.display(&eval.root))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_show(cli: &Cli, args: &ShowDerivationArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    // JSON is its only format, with --json or without.
    let printer = printer.with_json(true);
    let mut store = cli.open_store()?;
    let roots: Vec<StorePath> = if args.target.ends_with(".toml") {
        vec![evaluate(&mut store, Path::new(&args.target))?.root]
    } else {
        let p = store.parse_path_arg(&args.target)?;
        anyhow::ensure!(p.is_derivation(), "{} is not a derivation (.drv)", store.display(&p));
        vec![p]
    };
    let mut out = serde_json::Map::new();
    let mut queue = roots;
    while let Some(p) = queue.pop() {
        if out.contains_key(&store.display(&p)) {
            continue;
        }
        let drv = drv_realise::read_derivation(&store, &p)?;
        if args.recursive {
            queue.extend(drv.input_derivations().into_keys());
        }
        out.insert(store.display(&p), drv.to_show_json(store.store_dir())?);
    }
    printer.json_pretty(&serde_json::Value::Object(out))?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_graph(cli: &Cli, args: &GraphArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let mut store = cli.open_store()?;
    let eval = evaluate(&mut store, &args.recipe)?;
    match args.format {
        GraphFormat::Dot => printer.result_text(&eval.to_dot(&store))?,
        GraphFormat::Json => printer.with_json(true).json_pretty(&eval.to_json(&store)?)?,
    }
    Ok(ExitCode::SUCCESS)
}
