//! `drv`: the command-line interface. Parses arguments, opens the store,
//! and prints; all the work is in `drv-store` and `drv-eval`.

mod commands;
mod diagnostics;
mod reporter;
mod store_view;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "drv", version, about = "A declarative, Nix-style derivation store")]
pub struct Cli {
    /// Keep the whole store under DIR (DIR/store holds what is logically
    /// /store; DIR/var/drv the database, roots and logs).
    #[arg(long, global = true, env = "DRV_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    /// The logical store directory that store paths (and their hashes) use.
    #[arg(long, global = true, env = "DRV_STORE_DIR", default_value = drv_store::DEFAULT_STORE_DIR, hide = true)]
    store_dir: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// A subcommand's arguments are built only when it is the one given:
// building the whole tree on every invocation cost ~40 heap page faults,
// several percent of a no-op build.
#[command(defer = true)]
enum Command {
    /// Operate on the store directly.
    #[command(subcommand)]
    Store(commands::store::StoreCommand),
    /// Compute hashes the way Nix does.
    #[command(subcommand)]
    Hash(commands::hash::HashCommand),
    /// Show metadata of valid store paths.
    PathInfo(commands::path_info::PathInfoArgs),
    /// Build recipes (or .drv paths): print the output paths, make `result` links.
    Build(commands::build::BuildArgs),
    /// Build (run) the tests of recipes; an unchanged test is cached.
    Test(commands::build::BuildArgs),
    /// Build a recipe and run its `main` program with ARGS (after `--`).
    Run(commands::run::RunArgs),
    /// A shell whose PATH and PYTHONPATH hold the recipes' closures.
    Shell(commands::run::ShellArgs),
    /// Print the build log of a recipe, a .drv or an output path.
    Log(commands::build::LogArgs),
    /// Evaluate a recipe: write its derivations and print the .drv path.
    Eval(commands::eval::EvalArgs),
    /// Show a derivation (of a recipe, or a .drv path) as JSON, like `nix derivation show`.
    ShowDerivation(commands::eval::ShowDerivationArgs),
    /// Print a recipe's derivation graph (dot or JSON).
    Graph(commands::eval::GraphArgs),
    /// Resolve the recipes' Debian packages into the lock file (drv.lock).
    Lock(commands::lock::LockArgs),
    /// Download a file, print its sha256 (SRI) and keep it in the store as
    /// a fixed-output path (`nix-prefetch-url`).
    Prefetch(commands::prefetch::PrefetchArgs),
    /// Delete every store path no root needs (`nix-store --gc`).
    Gc(commands::gc::GcArgs),
    /// Manage the garbage collector's roots.
    #[command(subcommand)]
    Root(commands::gc::RootCommand),
    /// Binary caches: push closures, serve the store, fetch substitutes.
    #[command(subcommand)]
    Cache(commands::cache::CacheCommand),
    /// Signing keys for binary caches (Nix's format).
    #[command(subcommand)]
    Key(commands::key::KeyCommand),
}

impl Cli {
    /// drv's configuration (files, then environment).
    fn config(&self) -> anyhow::Result<drv_store::Config> {
        Ok(drv_store::Config::load()?)
    }

    fn open_store(&self) -> anyhow::Result<drv_store::LocalStore> {
        use anyhow::Context as _;
        let store_dir: drv_store::StoreDir = self.store_dir.parse()?;
        let root = self.root.clone().unwrap_or_else(|| PathBuf::from("/"));
        drv_store::LocalStore::open(&root, store_dir)
            .with_context(|| format!("cannot open the store under {}", root.display()))
    }
}

fn main() -> ExitCode {
    // `drv … | head` ends quietly when the reader goes away, as other Unix
    // tools do, instead of panicking on the failed write.
    // SAFETY: no other thread exists yet to race on the signal disposition.
    let _ = unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Store(c) => commands::store::run(&cli, c),
        Command::Hash(c) => commands::hash::run(c),
        Command::PathInfo(a) => commands::path_info::run(&cli, a),
        Command::Build(a) => commands::build::run_build(&cli, a, false),
        Command::Test(a) => commands::build::run_build(&cli, a, true),
        Command::Log(a) => commands::build::run_log(&cli, a),
        Command::Run(a) => commands::run::run_run(&cli, a),
        Command::Shell(a) => commands::run::run_shell(&cli, a),
        Command::Eval(a) => commands::eval::run_eval(&cli, a),
        Command::ShowDerivation(a) => commands::eval::run_show(&cli, a),
        Command::Graph(a) => commands::eval::run_graph(&cli, a),
        Command::Lock(a) => commands::lock::run(&cli, a),
        Command::Prefetch(a) => commands::prefetch::run(&cli, a),
        Command::Gc(a) => commands::gc::run_gc(&cli, a),
        Command::Root(c) => commands::gc::run_root(&cli, c),
        Command::Cache(c) => commands::cache::run(&cli, c),
        Command::Key(c) => commands::key::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`drv store dump | head`) is the reader's choice.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            let mut stderr = std::io::stderr().lock();
            // A recipe or lock-file error shows its line, as cargo's do.
            if let Some(shown) = diagnostics::render(&e, diagnostics::color_on_stderr()) {
                let _ = writeln!(stderr, "{shown}");
                return ExitCode::FAILURE;
            }
            let _ = write!(stderr, "error: {e}");
            for cause in e.chain().skip(1) {
                let _ = write!(stderr, ": {cause}");
            }
            let _ = writeln!(stderr);
            ExitCode::FAILURE
        }
    }
}
