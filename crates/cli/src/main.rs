//! `drv`: the command-line interface, layer 6 of 6 (docs/architecture.md,
//! "Layers"). Parses arguments, opens the store, and prints; all the work
//! is in the crates below (`drv-eval`, `drv-realise`, `drv-store`).

mod commands;
mod diagnostics;
mod printer;
mod reporter;
mod store_view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "drv",
    version,
    about = "A declarative, Nix-style derivation store",
    long_about = "A declarative, Nix-style derivation store.\n\n\
        drv evaluates recipes (TOML files) into Nix derivations, realises them (builds them in a \
        sandbox, or substitutes them from a binary cache) into an immutable store, and shares \
        the results through Nix-format binary caches.\n\n\
        The store is /store, with its database, GC roots and build logs under /var/drv. \
        `--root DIR` (or DRV_ROOT) keeps both under DIR instead; store paths stay the same.",
    after_help = "\
Examples:
  # Build a recipe: print its output path and link it as ./result
  drv build recipes/zlib.toml

  # Run a recipe's program, then delete what no GC root keeps alive
  drv run recipes/flask_app.toml -- --port 8000
  drv gc

  # Keep the store under your home directory (no root needed)
  DRV_ROOT=$HOME/drv drv build recipes/zlib.toml

Run `drv help COMMAND` for a command's options and examples."
)]
pub struct Cli {
    /// Keep the whole store under DIR: DIR/store holds the store paths, DIR/var/drv the
    /// database, GC roots and build logs. Store paths are still those of /store.
    #[arg(long, global = true, env = "DRV_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    /// The logical store directory that store paths (and their hashes) use.
    #[arg(long, global = true, env = "DRV_STORE_DIR", default_value = drv_formats::DEFAULT_STORE_DIR, hide = true)]
    store_dir: String,

    /// How to show progress: `auto` draws a live display when stderr is a
    /// terminal and prints plain lines otherwise; `lines` always prints
    /// plain lines; `bar` always draws the live display.
    #[arg(long, global = true, env = "DRV_LOG_FORMAT", value_enum, default_value_t, value_name = "FORMAT")]
    log_format: reporter::LogFormat,

    /// Print only results on stdout (store paths, hashes, JSON) and warnings and errors on
    /// stderr: no progress, summaries or notes.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    /// Also print details on stderr (when building: each derivation's outcome).
    #[arg(short, long, global = true)]
    verbose: bool,

    #[command(subcommand)]
    command: Command,
}

// Each command's doc comment is its help: the first line its summary in
// `drv --help`, the rest its description in `drv COMMAND --help`; every
// command shows examples after its options. Argument groups that several
// commands flatten carry no doc comment, since clap would show it as the
// description of the command that flattens them.
#[derive(Subcommand)]
// A subcommand's arguments are built only when it is the one given:
// building the whole tree on every invocation cost ~40 heap page faults,
// several percent of a no-op build.
#[command(defer = true)]
enum Command {
    /// Build recipes or derivations and link their outputs as ./result
    ///
    /// Evaluates each recipe into derivations and realises them: what is valid in the store is
    /// kept, what a binary cache has is substituted, and the rest is built in the sandbox.
    /// Prints each output's store path on stdout and makes a `result` link to it, which is a GC
    /// root: the path stays until the link is removed.
    #[command(after_help = "\
Examples:
  # Build a recipe; link its outputs as ./result (and ./result-OUTPUT)
  drv build recipes/zlib.toml

  # Two builds at once, showing their logs, going on past a failure
  drv build -j 2 -L --keep-going recipes/cpython.toml recipes/flask.toml

  # Rebuild everything in the closure and compare with what is registered
  drv build --check recipes/flask_app.toml

  # Also rebuild under varied circumstances (build path, time, cores, umask, user, host name,
  # locale, time zone, environment, file order) and name what the outputs depend on
  drv build --check --vary recipes/zlib.toml
  drv build --check --vary=umask,file-order --json recipes/zlib.toml

  # Build without asking any binary cache, and make no link
  drv build --no-substitute --no-link recipes/zlib.toml")]
    Build(commands::build::BuildArgs),
    /// Run the tests of recipes (their [[test]] derivations)
    ///
    /// Builds each recipe's tests as `drv build` builds a package: a test passes when its
    /// derivation builds. A test whose derivation is unchanged and already passed is not run
    /// again; it is reported as cached.
    #[command(after_help = "\
Examples:
  # Run a recipe's tests
  drv test recipes/compiler_version_test.toml

  # Show the test output as it runs
  drv test -L recipes/compiler_version_test.toml")]
    Test(commands::build::BuildArgs),
    /// Build a recipe and run its main program
    ///
    /// Builds the recipe (as `drv build` does, without a result link) and runs the program its
    /// `main` names, with ARGS after `--`. The exit code is the program's.
    #[command(after_help = "\
Examples:
  # Run the flask app on port 8000
  drv run recipes/flask_app.toml -- --port 8000

  # Run it with nothing of the host but the kernel: a root of its closure only
  drv run --isolated recipes/flask_app.toml -- --port 8000")]
    Run(commands::run::RunArgs),
    /// Start a shell with recipes' closures on PATH and PYTHONPATH
    ///
    /// Builds the recipes and starts an interactive shell (or runs one command) whose PATH and
    /// PYTHONPATH hold their closures.
    #[command(after_help = "\
Examples:
  # An interactive shell with flask importable
  drv shell recipes/flask.toml

  # Run one command in it
  drv shell recipes/flask.toml -c 'python3 -c \"import flask\"'")]
    Shell(commands::run::ShellArgs),
    /// Print the build log of a recipe, a derivation or an output path
    ///
    /// With `-f`, follow a build in progress until it ends.
    #[command(after_help = "\
Examples:
  drv log result
  drv log recipes/zlib.toml
  drv log -f recipes/cpython.toml     # while it builds, in another terminal
  drv log /store/…-zlib-1.2.13.drv")]
    Log(commands::build::LogArgs),
    /// Show why a store path depends on another
    ///
    /// Prints the chain of references from PATH to DEPENDENCY and, for each step, the file in
    /// the referring path that holds the reference, as `nix why-depends` does.
    #[command(after_help = "\
Examples:
  drv why-depends result /store/…-zlib-1.2.13
  drv why-depends recipes/flask_app.toml recipes/zlib.toml --all
  drv why-depends --json result /store/…-glibc-2.36-9+deb12u14")]
    WhyDepends(commands::why_depends::WhyDependsArgs),
    /// Show why a recipe builds anew: what changed since an earlier build
    ///
    /// Evaluates the recipe (or takes a derivation) and compares it with the derivation of an
    /// earlier build, input by input, as nix-diff does: prints the chain of inputs that changed
    /// down to each first difference (a build script line, a variable, a source, a pinned Debian
    /// package, an added or removed dependency) with the recipe or lock file line it comes from.
    #[command(after_help = "\
Examples:
  # Why does the app build again since the build that result points to?
  drv why-rebuild recipes/flask_app.toml --since result

  # The same against a derivation, as JSON
  drv why-rebuild --json recipes/zlib.toml --since /store/…-zlib-1.2.13.drv

  # Why the binary cache has no substitute: what it lacks, and what differs from what it has
  drv why-rebuild recipes/flask_app.toml --substituters http://127.0.0.1:5000")]
    WhyRebuild(commands::why_rebuild::WhyRebuildArgs),
    /// Evaluate a recipe into derivations and print the top .drv path
    ///
    /// Writes the recipe's derivations (.drv files) into the store without building anything,
    /// and prints the store path of the recipe's own derivation.
    #[command(after_help = "\
Examples:
  drv eval recipes/zlib.toml

  # Every derivation of the recipe, with its outputs
  drv eval --json recipes/flask_app.toml")]
    Eval(commands::eval::EvalArgs),
    /// Show a derivation as JSON, like `nix derivation show`
    #[command(after_help = "\
Examples:
  drv show-derivation recipes/zlib.toml

  # With every input derivation, recursively
  drv show-derivation -r recipes/flask_app.toml")]
    ShowDerivation(commands::eval::ShowDerivationArgs),
    /// Print a recipe's derivation graph (Graphviz dot or JSON)
    #[command(after_help = "\
Examples:
  # Render the graph with Graphviz
  drv graph recipes/flask_app.toml | dot -Tsvg > graph.svg

  drv graph --format json recipes/flask_app.toml")]
    Graph(commands::eval::GraphArgs),
    /// Pin the recipes' Debian packages in the lock file (drv.lock)
    ///
    /// Resolves the Debian package names the recipes use against the archive's signed indices
    /// and records each package's version and sha256 in drv.lock, which evaluation reads. What
    /// is locked stays locked: only names missing from the lock are resolved, unless --update
    /// says otherwise.
    #[command(after_help = "\
Examples:
  # Lock what the recipes of a directory use
  drv lock recipes/

  # Check, offline, that the lock covers every recipe (as CI would)
  drv lock --check recipes/

  # Move gcc-12 (and what must move with it) to the archive's current version
  drv lock --update gcc-12 recipes/")]
    Lock(commands::lock::LockArgs),
    /// Download a file into the store and print its sha256 (`nix-prefetch-url`)
    ///
    /// Adds the file under a fixed-output store path, so a recipe that pins this hash finds it
    /// in the store and never downloads it again. Prints the hash in SRI form, ready to paste
    /// into a recipe.
    #[command(after_help = "\
Examples:
  drv prefetch mirror://debian/pool/main/z/zlib/zlib_1.2.13.dfsg.orig.tar.bz2

  # Hash, size and store path of a local file, as JSON
  drv prefetch --json ./zlib-1.2.13.tar.gz")]
    Prefetch(commands::prefetch::PrefetchArgs),
    /// Show metadata of valid store paths: NAR hash and size, references, closure size
    #[command(after_help = "\
Examples:
  # The NAR size of each path of result's closure
  drv path-info -r -s result

  # Everything registered about a path, as JSON
  drv path-info --json result")]
    PathInfo(commands::path_info::PathInfoArgs),
    /// Delete the store paths that no GC root keeps alive (`nix-store --gc`)
    ///
    /// A store path is alive when a GC root (a result link, a root made with `drv root add`, a
    /// running drv command) reaches it through references; everything else is deleted.
    #[command(after_help = "\
Examples:
  # What would be deleted
  drv gc --dry-run

  # Free at least 1 GiB, oldest paths first
  drv gc --max-freed 1G

  # Why a path is kept: the roots
  drv gc --print-roots")]
    Gc(commands::gc::GcArgs),
    /// Add, remove and list GC roots
    #[command(subcommand, after_help = "\
Examples:
  # Keep a build alive under a name, then let it go
  drv root add flask-app result
  drv root remove flask-app

  drv root list")]
    Root(commands::gc::RootCommand),
    /// Share store paths through binary caches: push, serve, fetch
    #[command(subcommand, after_help = "\
Examples:
  # Push a build's closure to a cache directory, signed
  drv cache push --to file:///srv/cache --key sk result

  # Serve this store as a binary cache, and substitute from it elsewhere
  drv cache serve --listen 127.0.0.1:5000 --key sk
  drv build --substituters http://127.0.0.1:5000 --trusted-public-key \"$(cat pk)\" recipes/zlib.toml")]
    Cache(commands::cache::CacheCommand),
    /// Make signing keys for binary caches (Nix's format)
    #[command(subcommand, after_help = "\
Examples:
  drv key generate --name cache-1 --secret-file cache-1.sec --public-file cache-1.pub
  drv key public < cache-1.sec")]
    Key(commands::key::KeyCommand),
    /// Work on the store directly: add files, dump and restore NARs, verify
    #[command(subcommand, after_help = "\
Examples:
  drv store add ./patches
  drv store dump ./src > src.nar
  drv store verify --check-contents")]
    Store(commands::store::StoreCommand),
    /// Compute sha256 hashes of files and directories as Nix does
    #[command(subcommand, after_help = "\
Examples:
  drv hash path ./src
  drv hash file --sri zlib-1.2.13.tar.gz")]
    Hash(commands::hash::HashCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_help = "\
Examples:
  # bash: load it in each new shell
  drv completions bash > ~/.local/share/bash-completion/completions/drv

  # zsh: into a directory of your $fpath
  drv completions zsh > ~/.zfunc/_drv

  # fish
  drv completions fish > ~/.config/fish/completions/drv.fish")]
    Completions(commands::completions::CompletionsArgs),
    /// Print drv's manual page (roff), or write one page per command
    #[command(after_help = "\
Examples:
  # Read it now
  drv man | man -l -

  # Install drv.1, drv-build.1, drv-cache-push.1, …
  drv man --dir ~/.local/share/man/man1")]
    Man(commands::completions::ManArgs),
}

impl Cli {
    /// The output policy the global flags ask for.
    fn printer(&self) -> printer::Printer {
        let verbosity = match (self.quiet, self.verbose) {
            (true, _) => printer::Verbosity::Quiet,
            (false, true) => printer::Verbosity::Verbose,
            (false, false) => printer::Verbosity::Normal,
        };
        printer::Printer::new(verbosity, self.log_format)
    }

    /// drv's configuration (files, then environment).
    fn config(&self) -> anyhow::Result<drv_realise::Config> {
        Ok(drv_realise::Config::load()?)
    }

    fn open_store(&self) -> anyhow::Result<drv_store::LocalStore> {
        use anyhow::Context as _;
        let store_dir: drv_formats::StoreDir = self.store_dir.parse()?;
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
    let p = cli.printer();
    let result = match &cli.command {
        Command::Store(c) => commands::store::run(&cli, c, p),
        Command::Hash(c) => commands::hash::run(c, p),
        Command::PathInfo(a) => commands::path_info::run(&cli, a, p),
        Command::Build(a) => commands::build::run_build(&cli, a, false, p),
        Command::Test(a) => commands::build::run_build(&cli, a, true, p),
        Command::Log(a) => commands::build::run_log(&cli, a, p),
        Command::WhyDepends(a) => commands::why_depends::run(&cli, a, p),
        Command::WhyRebuild(a) => commands::why_rebuild::run(&cli, a, p),
        Command::Run(a) => commands::run::run_run(&cli, a, p),
        Command::Shell(a) => commands::run::run_shell(&cli, a, p),
        Command::Eval(a) => commands::eval::run_eval(&cli, a, p),
        Command::ShowDerivation(a) => commands::eval::run_show(&cli, a, p),
        Command::Graph(a) => commands::eval::run_graph(&cli, a, p),
        Command::Lock(a) => commands::lock::run(&cli, a, p),
        Command::Prefetch(a) => commands::prefetch::run(&cli, a, p),
        Command::Gc(a) => commands::gc::run_gc(&cli, a, p),
        Command::Root(c) => commands::gc::run_root(&cli, c, p),
        Command::Cache(c) => commands::cache::run(&cli, c, p),
        Command::Key(c) => commands::key::run(c, p),
        Command::Completions(a) => commands::completions::run_completions(a, p),
        Command::Man(a) => commands::completions::run_man(a, p),
    };
    result.unwrap_or_else(|e| p.report_error(&e))
}
