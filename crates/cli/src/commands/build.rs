//! `drv build`, `drv test`, `drv log`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Args;
use drv_formats::StorePath;
use drv_store::LocalStore;
use drv_realise::{BuildError, BuildResult, BuildResults, BuildSettings, BuildStatus, Derivations, Realiser};

use crate::printer::Printer;
use crate::reporter::{Summary, TerminalReporter};
use crate::Cli;

#[derive(Args, Clone)]
pub struct BuildArgs {
    /// Recipe files (.toml) or derivations (.drv store paths).
    #[arg(required = true)]
    targets: Vec<String>,
    /// Name of the result link; other outputs get NAME-OUTPUT, further targets NAME-1, NAME-2, ….
    #[arg(short = 'o', long = "out-link", value_name = "NAME", default_value = "result")]
    out_link: PathBuf,
    /// Make no result link (the outputs are then not GC roots).
    #[arg(long)]
    no_link: bool,
    /// How many derivations to build at once; 0 means one per core (default: the configuration's
    /// max-jobs, else one per core).
    #[arg(short = 'j', long, value_name = "N")]
    max_jobs: Option<usize>,
    /// CPU cores each build may use (its NIX_BUILD_CORES); 0 means all (default: the
    /// configuration's cores, else all).
    #[arg(long, value_name = "N")]
    cores: Option<usize>,
    /// When a build fails, go on building what does not depend on it.
    #[arg(short = 'k', long)]
    keep_going: bool,
    /// Rebuild every derivation of the closure whose outputs are valid, and fail if a result
    /// differs from the registered one (a non-deterministic build).
    #[arg(long, alias = "rebuild")]
    check: bool,
    /// With --check: rebuild each derivation also under deliberate variations of what a build
    /// could depend on beyond its derivation, and narrow any difference down to them (all
    /// variations when LIST is not given). LIST is comma-separated names among build-path, time,
    /// cores, umask, user, hostname, locale, timezone, env, file-order.
    #[arg(long, value_name = "LIST", num_args = 0..=1, require_equals = true, default_missing_value = "all", requires = "check")]
    vary: Option<String>,
    /// Print JSON on stdout instead of the output paths: an array with an object per derivation
    /// realised, the targets first, `{"drvPath", "status", "outputs": {NAME: PATH}, "error"}`
    /// (`nix build --json`'s shape, with the status in Nix's words). With --vary: the report of
    /// the variations instead.
    #[arg(long)]
    json: bool,
    /// Print the builds' logs on stderr as they run.
    #[arg(short = 'L', long)]
    print_build_logs: bool,
    /// Keep the build directory of a failed build, to look into. Builds then run in a directory
    /// on the store's file system instead of the sandbox's own tmpfs, so a build that lists a
    /// directory sees that file system's order.
    #[arg(short = 'K', long)]
    keep_failed: bool,
    /// Build without the sandbox. Refused for derivations that need the pinned toolchain, which
    /// only the sandbox provides.
    #[arg(long)]
    no_sandbox: bool,
    /// Processes and threads one build may have at once; 0 means no limit (default: the
    /// configuration's max-processes, else 8192).
    #[arg(long, value_name = "N")]
    max_processes: Option<u64>,
    /// Memory one build may use, e.g. 4G; 0 means no limit (default: the configuration's
    /// max-memory, else 3/4 of the machine's).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Size of each of a build's /tmp and /dev/shm, e.g. 512M; 0 means no limit (default: the
    /// configuration's tmp-size, else 1G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    tmp_size: Option<u64>,
    #[command(flatten)]
    substitute: super::cache::SubstituteArgs,
    /// No summary line when nothing was built or fetched (`drv run`).
    #[arg(skip)]
    no_summary_when_idle: bool,
}

/// Targets as `.drv` paths: recipes are evaluated (their package, or with
/// `tests` their tests); with the derivations evaluation made, so that
/// realisation does not read them back.
pub fn resolve_targets(store: &mut LocalStore, targets: &[String], tests: bool) -> anyhow::Result<(Vec<StorePath>, Derivations)> {
    let mut out = Vec::new();
    let mut evaluated = Vec::new();
    for t in targets {
        if t.ends_with(".toml") {
            let mut eval = super::eval::evaluate_summary(store, Path::new(t))?;
            evaluated.append(&mut eval.derivations);
            if tests {
                if eval.tests.is_empty() {
                    bail!("{t} declares no [[test]]");
                }
                out.extend(eval.tests);
            } else {
                out.push(eval.root);
            }
        } else {
            let p = store.parse_path_arg(t)?;
            if !p.is_derivation() {
                bail!("{} is not a derivation (.drv) or a recipe (.toml)", store.display(&p));
            }
            out.push(p);
        }
    }
    Ok((out, Derivations::from_evaluated(evaluated)))
}

pub fn run_build(cli: &Cli, args: &BuildArgs, tests: bool, printer: Printer) -> anyhow::Result<ExitCode> {
    // Refused before anything is built: `-o ''`, `-o dir/..`, `-o /`.
    if !args.no_link && args.out_link.file_name().is_none() {
        bail!("--out-link {:?} names no file to create the result link as; pass a name like `result`", args.out_link);
    }
    let mut store = cli.open_store()?;
    // Most builds find most things valid: checked with collections held
    // off (a shared lock), no temporary-roots file is written for them.
    // The realiser lets collections run before it downloads or builds.
    store.pause_collections()?;
    let (targets, derivations) = resolve_targets(&mut store, &args.targets, tests)?;
    // With --json the results are printed by `realise`, and the output
    // paths are not: stdout holds the JSON document only.
    let printer = printer.with_json(args.json);
    let result = realise(cli, &store, &targets, &derivations, args, printer)?;
    // The variation report says nothing of result links: none are made.
    if args.json && args.vary.is_some() {
        store.end_pause_dropping_temp_roots();
        return Ok(ExitCode::SUCCESS);
    }
    for (i, drv_path) in targets.iter().enumerate() {
        let target = result.result(drv_path).context("a target has no build result")?;
        if tests {
            let state = if target.status == BuildStatus::Built { "passed" } else { "cached" };
            printer.info(format_args!("test {}: {state}", drv_path.name().trim_end_matches(".drv")));
        }
        for (name, path) in &target.outputs {
            printer.result(store.display(path))?;
            if !args.no_link {
                let mut link = args.out_link.clone().into_os_string();
                if i > 0 {
                    link.push(format!("-{i}"));
                }
                if name != "out" {
                    link.push(format!("-{name}"));
                }
                make_result_link(&store, Path::new(&link), path)?;
            }
        }
    }
    // Done with every path: the result links keep what was asked for.
    store.end_pause_dropping_temp_roots();
    Ok(ExitCode::SUCCESS)
}

/// Build `targets` (`.drv` paths) as `args` says; what happened to each
/// derivation. Failing derivations are printed and make an error.
pub fn realise(
    cli: &Cli,
    store: &LocalStore,
    targets: &[StorePath],
    derivations: &Derivations,
    args: &BuildArgs,
    printer: Printer,
) -> anyhow::Result<BuildResults> {
    let config = cli.config()?;
    let reporter = Arc::new(TerminalReporter::new(args.print_build_logs, printer));
    let defaults = BuildSettings::default();
    let mut limits = config.limits();
    let flag = |value: u64| (value != 0).then_some(value);
    if let Some(n) = args.max_processes {
        limits.processes = flag(n);
    }
    if let Some(n) = args.max_memory {
        limits.memory = flag(n);
    }
    if let Some(n) = args.tmp_size {
        limits.tmp_size = flag(n);
    }
    let vary = args.vary.as_deref().map(drv_realise::parse_variations).transpose()?;
    if vary.is_some() && args.no_sandbox {
        bail!("--vary needs the sandbox: it is what varies the build's circumstances");
    }
    let settings = BuildSettings {
        max_jobs: args.max_jobs.or(config.max_jobs).unwrap_or(defaults.max_jobs),
        cores: args.cores.or(config.cores).unwrap_or(defaults.cores),
        keep_going: args.keep_going,
        check: args.check,
        keep_failed: args.keep_failed,
        sandbox: !args.no_sandbox,
        limits,
        vary,
    };
    let substituter = args.substitute.substituter(&config, store.store_dir())?;
    let realiser = Realiser::new(store, settings, reporter.clone(), config).with_substituter(substituter);
    let result = match realiser.realise(store, targets, derivations) {
        Err(BuildError::Sandbox(e)) => {
            return Err(anyhow::Error::new(e).context("cannot build in the sandbox (pass --no-sandbox to build without it)"))
        }
        r => r?,
    };
    let summary = Summary {
        built: result.count(BuildStatus::Built),
        substituted: result.substituted_paths,
        // Substituted derivations were not built: valid once their outputs came.
        already_valid: result.count(BuildStatus::AlreadyValid) + result.count(BuildStatus::Substituted),
        failed: result.failures().count(),
    };
    // `drv run` and `drv shell` say nothing when nothing was to be done.
    let idle = summary.built + summary.substituted + summary.failed == 0;
    reporter.finish((!(idle && args.no_summary_when_idle)).then_some(summary));
    // `-v`: what became of each derivation, in Nix's words, in the order
    // of their paths (builds end in any order).
    let mut results: Vec<&BuildResult> = result.results.iter().collect();
    results.sort_by(|a, b| a.drv_path.cmp(&b.drv_path));
    for r in results {
        printer.detail(format_args!("{}: {}", store.display(&r.drv_path), r.status));
    }
    if args.json && args.vary.is_none() {
        // Printed before a failure ends the command: a script reads which
        // derivation failed, and why, from it.
        printer.json_pretty(&results_json(store, &result, targets))?;
    }
    if args.vary.is_some() {
        if args.json {
            let json = serde_json::json!({ "derivations": result.vary_reports });
            printer.json_pretty(&json)?;
        } else {
            for report in &result.vary_reports {
                for line in render_vary_report(report).lines() {
                    printer.info(line);
                }
            }
        }
    }
    let failed = result.failures().count();
    if failed > 0 {
        for r in result.failures() {
            let why = r.error.as_ref().map_or_else(|| r.status.to_string(), ToString::to_string);
            printer.error(format_args!("{}: {why}", store.display(&r.drv_path)));
        }
        bail!("{failed} derivation(s) failed");
    }
    Ok(result)
}

/// `drv build --json`: an object per derivation realised, `nix build
/// --json`'s shape (`drvPath`, `outputs`) with the status, and the error of
/// a failure; the targets first, in the order given, then the rest in the
/// order of their paths.
fn results_json(store: &LocalStore, result: &BuildResults, targets: &[StorePath]) -> serde_json::Value {
    let mut ordered: Vec<&BuildResult> = Vec::new();
    for r in targets.iter().filter_map(|t| result.result(t)) {
        // A target given twice is one derivation.
        if !ordered.iter().any(|o| o.drv_path == r.drv_path) {
            ordered.push(r);
        }
    }
    let mut rest: Vec<&BuildResult> = result.results.iter().filter(|r| !targets.contains(&r.drv_path)).collect();
    rest.sort_by(|a, b| a.drv_path.cmp(&b.drv_path));
    ordered.extend(rest);
    let objects = ordered.iter().map(|r| {
        let outputs: serde_json::Map<String, serde_json::Value> =
            r.outputs.iter().map(|(name, path)| (name.clone(), store.display(path).into())).collect();
        let mut o = serde_json::json!({
            "drvPath": store.display(&r.drv_path),
            "status": r.status.to_string(),
            "outputs": outputs,
        });
        if let Some(e) = &r.error {
            o["error"] = e.to_string().into();
        }
        o
    });
    serde_json::Value::Array(objects.collect())
}

impl BuildArgs {
    /// Defaults for commands that build on the way (`drv run`, `drv shell`).
    pub fn quiet_for(targets: Vec<String>) -> Self {
        Self {
            targets,
            out_link: PathBuf::from("result"),
            no_link: true,
            max_jobs: None,
            cores: None,
            keep_going: false,
            check: false,
            vary: None,
            json: false,
            print_build_logs: false,
            keep_failed: false,
            no_sandbox: false,
            max_processes: None,
            max_memory: None,
            tmp_size: None,
            substitute: super::cache::SubstituteArgs::default(),
            no_summary_when_idle: true,
        }
    }
}

fn parse_size(text: &str) -> Result<u64, drv_sandbox::SizeError> {
    drv_sandbox::parse_size(text)
}

/// Point `link` at `path` and register it as an indirect GC root.
fn make_result_link(store: &LocalStore, link: &Path, path: &StorePath) -> anyhow::Result<()> {
    let target = store.display(path);
    if let Ok(m) = std::fs::symlink_metadata(link) {
        if !m.file_type().is_symlink() {
            bail!("{} exists and is not a symlink; not replacing it", link.display());
        }
        // Already right (a rebuild with nothing to do): only the root.
        if std::fs::read_link(link).is_ok_and(|t| t == Path::new(&target)) {
            store.add_indirect_root(link)?;
            return Ok(());
        }
    }
    drv_store::replace_symlink(Path::new(&target), link).with_context(|| format!("cannot create {}", link.display()))?;
    store.add_indirect_root(link)?;
    Ok(())
}

#[derive(Args)]
pub struct LogArgs {
    /// A recipe file, a derivation (.drv store path), or an output path or `result` link.
    target: String,
    /// Follow a build in progress: print its log as it is written until
    /// the build ends (like `tail -f`). A finished build's log is printed
    /// whole.
    #[arg(short, long)]
    follow: bool,
}

pub fn run_log(cli: &Cli, args: &LogArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let mut store = cli.open_store()?;
    let drv = if args.target.ends_with(".toml") {
        super::eval::evaluate_summary(&mut store, Path::new(&args.target))?.root
    } else {
        let p = store.parse_path_arg(&args.target)?;
        if p.is_derivation() {
            p
        } else {
            let info = store.require_path_info(&p)?;
            info.deriver.with_context(|| format!("{} has no known deriver", store.display(&p)))?
        }
    };
    let mut out = printer.stdout();
    if !drv_store::copy_log(&store, &drv, args.follow, &mut out)? {
        let file = drv_store::log_file(&store, &drv);
        bail!("no build log of {} ({}): it has not been built here, or is not building yet", store.display(&drv), file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--vary`'s report of one derivation, for a terminal: what it depends
/// on, each cause with the files that differ.
fn render_vary_report(report: &drv_realise::VaryReport) -> String {
    use std::fmt::Write as _;
    let names = |vs: &[drv_realise::Variation]| vs.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ");
    let mut out = String::new();
    let varied: Vec<_> = report.varied.iter().filter(|v| !report.not_varied.iter().any(|n| n.variation == **v)).copied().collect();
    if report.reproducible {
        let _ = writeln!(out, "{}: reproducible under {} ({} builds)", report.drv, names(&varied), report.builds);
    } else {
        let _ = writeln!(out, "{}: NOT reproducible ({} builds; their logs in {})", report.drv, report.builds, report.logs.join(", "));
    }
    let outputs = |out: &mut String, diffs: &[drv_realise::OutputDifference]| {
        for d in diffs {
            let _ = writeln!(out, "    output {}:", d.output);
            for line in &d.differences {
                for l in line.lines() {
                    let _ = writeln!(out, "    {l}");
                }
            }
        }
    };
    if let Some(diffs) = &report.uncontrolled {
        let _ = writeln!(
            out,
            "  two builds at the same moment under the same circumstances differ (randomness, sub-second time, \
             scheduling: no variation to blame):"
        );
        outputs(&mut out, diffs);
    }
    for cause in &report.causes {
        let what = match cause.variations.as_slice() {
            [drv_realise::Variation::Time] => "time (the registered output was built at another time)".to_owned(),
            [one] => format!("{} ({})", one.name(), one.describe()),
            many => format!("{} (only together)", names(many)),
        };
        let _ = writeln!(out, "  depends on {what}:");
        outputs(&mut out, &cause.outputs);
    }
    for n in &report.not_varied {
        let _ = writeln!(out, "  not varied: {}: {}", n.variation, n.reason);
    }
    for k in &report.kept {
        let _ = writeln!(out, "  second result kept at {k}");
    }
    for d in &report.diffoscope {
        let _ = writeln!(out, "{d}");
    }
    out
}
