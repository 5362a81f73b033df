//! Realisation: turning derivations into valid store paths.
//!
//! [`Realiser::realise`] takes the targets' derivations from
//! [`Derivations`] (those evaluation made, or each `.drv` read once) and,
//! recursively, every input whose outputs are not valid yet; substitutes
//! what binary caches have; builds the rest in dependency order, up to
//! `max_jobs` at once. Fixed-output downloads and toolchain root file
//! systems are drv's own builders ([`crate::builtins`]); every other
//! build is a [`BuildRequest`] (a pure function of the derivation, its
//! inputs and the settings: [`build_request`]) run by an [`Executor`]
//! (the local sandbox, [`LocalSandbox`]). Outputs are canonicalised,
//! scanned for references to the build's inputs, and made valid together
//! with the derivation as deriver through the store's one door
//! ([`LocalStore::add_valid`]). Each build's log is kept (zstd) under
//! `ROOT/var/drv/log/`, and written uncompressed as it comes while the
//! build runs ([`drv_store::build_log`]). What happened to each
//! derivation is a [`BuildResult`] with Nix's [`BuildStatus`].

mod derivations;
mod error;
mod executor;
mod request;
mod result;

pub use derivations::{read_derivation, Derivations};
pub use error::{BuildError, DebianMismatch};
pub use executor::{executor_for, Executor, LocalSandbox, UnknownExecutor};
pub use request::{build_request, BuildDirs, BuildRequest};
pub use result::{BuildResult, BuildStatus, BuildResults};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{BufRead, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use drv_formats::{nar, ContentAddress, Derivation, StorePath};

use crate::builtins::{self, FETCH_BUILDER, ROOTFS_BUILDER};
use crate::fetch::{FetchSource, Fetcher};
use drv_store::{LocalStore, NewPath, OutputsOf, PathLocks, Staging, StoreLayout};
use crate::reporter::Reporter;
use crate::vary::{Cause, Circumstances, NotVaried, OutputDifference, Variation, VaryReport};
use drv_store::StoreError;

use drv_store::log_file;
use crate::output_diff::tree_differences;

/// How many lines of a failed build's log are shown.
pub const LOG_TAIL_LINES: usize = 25;

/// Downloads at once, besides `max_jobs` builds: they wait on the
/// network, not on the cores.
pub const MAX_DOWNLOADS: usize = 16;

/// Knobs of a realisation.
#[derive(Clone, Debug)]
pub struct BuildSettings {
    /// Builds at once; 0: one per core.
    pub max_jobs: usize,
    /// `NIX_BUILD_CORES` of each build (not part of any hash); 0: all
    /// cores, as in Nix.
    pub cores: usize,
    /// Go on with what does not depend on a failed build.
    pub keep_going: bool,
    /// Rebuild every derivation of the closure that is already valid and
    /// compare the result with the registered one.
    pub check: bool,
    /// Keep the build directory of a failed build.
    pub keep_failed: bool,
    /// `false` only when the user asked for `--no-sandbox`.
    pub sandbox: bool,
    /// What each build may take of the host.
    pub limits: drv_sandbox::Limits,
    /// With `check`: rebuild under these variations and narrow any
    /// difference down to them ([`crate::vary`]).
    pub vary: Option<Vec<Variation>>,
}

impl Default for BuildSettings {
    fn default() -> Self {
        Self {
            max_jobs: 0,
            cores: 0,
            keep_going: false,
            check: false,
            keep_failed: false,
            sandbox: true,
            limits: drv_sandbox::Limits::default(),
            vary: None,
        }
    }
}

/// The cores this process may use (affinity and cgroup quota). Asked only
/// when something is built: it reads several files.
fn available_cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// `value`, or the number of cores for 0.
fn or_cores(value: usize) -> usize {
    if value == 0 { available_cores() } else { value }
}

/// Builds derivations of one store.
pub struct Realiser {
    layout: StoreLayout,
    /// Connections to the store, reused by the builds' threads (opening
    /// one costs more than a small build's registration).
    stores: std::sync::Mutex<Vec<LocalStore>>,
    /// What runs the builds.
    executor: Arc<dyn Executor>,
    settings: BuildSettings,
    reporter: Arc<dyn Reporter>,
    config: crate::config::Config,
    /// Made on first use: an HTTP client loads the platform's certificates,
    /// which a build with nothing to download should not pay for.
    fetcher: std::sync::Mutex<Option<Arc<Fetcher>>>,
    /// Binary caches asked before building.
    substituter: Option<crate::cache::Substituter>,
    /// `--vary`'s reports, filled by the builds' threads.
    vary_reports: std::sync::Mutex<Vec<VaryReport>>,
}

/// A build's outputs, staged, and the store paths they may refer to.
struct Built {
    staged: Vec<(String, StorePath, Staging)>,
    candidates: BTreeSet<StorePath>,
}

/// The result of one build made by `--vary`: its outputs, canonicalised,
/// with their NAR hashes; or why it failed.
enum Trial {
    Built(BTreeMap<String, (Staging, drv_formats::Sha256)>),
    Failed(BuildError),
}

/// Builds of one derivation for `--vary`, counted, each logged apart.
struct Trials<'a> {
    realiser: &'a Realiser,
    job: &'a Job,
    logs: PathBuf,
    count: std::sync::atomic::AtomicUsize,
}

impl Trials<'_> {
    /// One build under `variations`, logged as `label`.
    fn one(&self, store: &mut LocalStore, variations: &[Variation], label: &str) -> Result<Trial, BuildError> {
        self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let circumstances = Circumstances::varied(variations, or_cores(self.realiser.settings.cores), available_cores());
        fs::create_dir_all(&self.logs).map_err(|e| StoreError::io(&self.logs, e))?;
        let log = self.logs.join(format!("{label}.zst"));
        let built = match self.realiser.build_once(store, self.job, &circumstances, &log) {
            Ok(built) => built,
            Err(e @ (BuildError::Failed { .. } | BuildError::LimitExceeded { .. } | BuildError::MissingOutput { .. })) => {
                return Ok(Trial::Failed(e))
            }
            Err(e) => return Err(e),
        };
        let mut outputs = BTreeMap::new();
        for (name, _, mut staging) in built.staged {
            staging.canonicalise()?;
            let hash = nar::hash_path(&staging.path()).map_err(StoreError::from)?;
            outputs.insert(name, (staging, hash.sha256));
        }
        Ok(Trial::Built(outputs))
    }

    /// Two builds started together on the next second boundary, so that a
    /// build that reads the clock to the second sees the same time in both.
    fn pair(
        &self,
        store: &mut LocalStore,
        a: &[Variation],
        b: &[Variation],
        label_a: &str,
        label_b: &str,
    ) -> Result<(Trial, Trial), BuildError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let start = std::time::Duration::from_secs(now.as_secs() + 1);
        let wait = start.saturating_sub(now);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| -> Result<Trial, BuildError> {
                self.realiser.with_store(|store| {
                    std::thread::sleep(wait);
                    self.one(store, a, label_a)
                })
            });
            std::thread::sleep(wait);
            let second = self.one(store, b, label_b);
            let first = other.join().unwrap_or_else(|_| Err(BuildError::Unsupported { drv: String::new(), reason: "a build thread panicked".into() }));
            Ok((first?, second?))
        })
    }
}

/// Outputs whose hashes differ between two sets of built outputs, with
/// how their files differ.
fn compare_built(
    a: &BTreeMap<String, (Staging, drv_formats::Sha256)>,
    b: &BTreeMap<String, (Staging, drv_formats::Sha256)>,
) -> Option<Vec<OutputDifference>> {
    let found: Vec<OutputDifference> = a
        .iter()
        .filter_map(|(name, (sa, ha))| {
            let (sb, hb) = b.get(name)?;
            (ha != hb).then(|| OutputDifference { output: name.clone(), differences: differences(&sa.path(), &sb.path()) })
        })
        .collect();
    (!found.is_empty()).then_some(found)
}

/// A varied build against a control: a failure is a difference too.
fn compare_trial(control: &BTreeMap<String, (Staging, drv_formats::Sha256)>, varied: &Trial) -> Option<Vec<OutputDifference>> {
    match varied {
        Trial::Built(outputs) => compare_built(control, outputs),
        Trial::Failed(e) => Some(vec![OutputDifference {
            output: "(build)".into(),
            differences: vec![format!("the build failed: {}", e.to_string().lines().next().unwrap_or_default())],
        }]),
    }
}

/// [`tree_differences`], or why they could not be listed.
fn differences(a: &Path, b: &Path) -> Vec<String> {
    tree_differences(a, b).unwrap_or_else(|e| vec![format!("cannot compare: {e}")])
}

/// Where diffoscope's report on a differing output goes, and the line
/// that says so; `None` when diffoscope is not installed.
fn diffoscope_line(store: &LocalStore, registered: &Path, kept: &Path, path: &StorePath) -> Option<String> {
    let report = store.layout().check_report(path);
    let written = crate::output_diff::diffoscope(registered, kept, &report)?;
    Some(format!("  diffoscope's report: {}", written.display()))
}

/// A log's name for builds under `variations`.
fn label_of(variations: &[Variation]) -> String {
    variations.iter().map(|v| v.name()).collect::<Vec<_>>().join("+")
}

/// One line: what a derivation's outputs depend on.
fn report_summary(report: &VaryReport) -> String {
    let mut parts: Vec<String> = report.causes.iter().map(|c| label_of(&c.variations)).collect();
    if report.uncontrolled.is_some() {
        parts.push("something no variation holds still (two identical builds at the same moment differ)".into());
    }
    format!("not reproducible: its outputs depend on {}", parts.join(", "))
}

/// A derivation to realise (from evaluation or its `.drv` file).
struct Job {
    drv_path: StorePath,
    drv: Arc<Derivation>,
    /// Inputs that must be realised first.
    deps: BTreeSet<StorePath>,
    /// The store paths the build may read: its input sources and the
    /// outputs it uses of its input derivations.
    inputs: BTreeSet<StorePath>,
    /// Rebuild although valid, and compare.
    check: bool,
}

impl Realiser {
    pub fn new(store: &LocalStore, settings: BuildSettings, reporter: Arc<dyn Reporter>, config: crate::config::Config) -> Self {
        Self {
            layout: store.layout().clone(),
            stores: std::sync::Mutex::new(Vec::new()),
            executor: Arc::new(LocalSandbox),
            settings,
            reporter,
            config,
            fetcher: std::sync::Mutex::new(None),
            substituter: None,
            vary_reports: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Run builds with `executor` instead of the local sandbox.
    pub fn with_executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = executor;
        self
    }

    /// Ask these binary caches for outputs before building them.
    pub fn with_substituter(mut self, substituter: Option<crate::cache::Substituter>) -> Self {
        self.substituter = substituter;
        self
    }

    /// Substitute what the caches have, top down: the targets' outputs
    /// first; only where a derivation's outputs are not to be had do its
    /// inputs' outputs matter. A cache failing is never an error here
    /// (what is missing is built).
    /// Returns how many store paths were downloaded, and the derivations
    /// whose wanted outputs they made valid.
    fn substitute(&self, targets: &[StorePath], derivations: &Derivations) -> Result<(usize, BTreeSet<StorePath>), BuildError> {
        let Some(sub) = &self.substituter else { return Ok((0, BTreeSet::new())) };
        self.with_store(|store| self.substitute_with(store, sub, targets, derivations))
    }

    fn substitute_with(
        &self,
        store: &mut LocalStore,
        sub: &crate::cache::Substituter,
        targets: &[StorePath],
        derivations: &Derivations,
    ) -> Result<(usize, BTreeSet<StorePath>), BuildError> {
        let mut substituted = 0;
        let mut done = BTreeSet::new();
        let mut level: Vec<(StorePath, Option<BTreeSet<String>>)> = targets.iter().map(|t| (t.clone(), None)).collect();
        let mut wanted_by_drv = WantedOutputs::default();
        while !level.is_empty() {
            let mut wanted = BTreeSet::new();
            let mut drvs = Vec::new();
            for (drv_path, outputs) in level.drain(..) {
                if wanted_by_drv.covers(&drv_path, outputs.as_ref()) {
                    continue;
                }
                let drv = derivations.get(store, &drv_path)?;
                let all = drv.outputs();
                let Some(names) = wanted_by_drv.add(&drv_path, outputs, all) else { continue };
                store.add_temp_root(&drv_path)?;
                let mut missing = false;
                for name in &names {
                    let o = &all[name];
                    store.add_temp_root(&o.path)?;
                    if !store.is_valid(&o.path)? {
                        wanted.insert(o.path.clone());
                        missing = true;
                    }
                }
                if missing {
                    drvs.push((drv_path, drv, names));
                }
            }
            if wanted.is_empty() {
                break;
            }
            // Downloads take a while: let collections run meanwhile.
            store.resume_collections()?;
            let report = sub.substitute(store, &wanted, self.reporter.as_ref())?;
            substituted += report.substituted.len();
            for problem in &report.problems {
                self.reporter.message(&format!("warning: {problem}"));
            }
            for (drv_path, drv, names) in drvs {
                let outs = drv.outputs();
                let mut valid = BTreeMap::new();
                for (n, o) in outs {
                    if store.is_valid(&o.path)? {
                        valid.insert(n.clone(), o.path.clone());
                    }
                }
                if !valid.is_empty() {
                    // Derivers of substituted paths: keep `drv log`/GC options working.
                    store.register_derivation_outputs(&drv_path, &valid)?;
                }
                if names.iter().all(|n| valid.contains_key(n)) {
                    done.insert(drv_path);
                } else {
                    level.extend(drv.input_derivations().into_iter().map(|(d, o)| (d, Some(o))));
                }
            }
        }
        Ok((substituted, done))
    }

    fn fetcher(&self) -> Result<Arc<Fetcher>, BuildError> {
        let mut slot = self.fetcher.lock().expect("fetcher lock");
        if let Some(f) = slot.as_ref() {
            return Ok(f.clone());
        }
        let f = Arc::new(Fetcher::new(&self.config, self.reporter.clone())?);
        *slot = Some(f.clone());
        Ok(f)
    }

    /// Run `f` with a connection to the store: one of the pool's, or a
    /// new one, returned to the pool afterwards.
    fn with_store<T>(&self, f: impl FnOnce(&mut LocalStore) -> Result<T, BuildError>) -> Result<T, BuildError> {
        let pooled = self.stores.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut store = match pooled {
            Some(s) => s,
            None => self.layout.open()?,
        };
        let r = f(&mut store);
        self.stores.lock().unwrap_or_else(|e| e.into_inner()).push(store);
        r
    }

    /// Realise `targets` (`.drv` paths valid in the store), taking their
    /// derivations from `derivations`. A failure of one derivation stops
    /// the others from starting unless `keep_going`; the returned
    /// [`BuildResults`] has a [`BuildResult`] for each derivation looked at.
    ///
    /// # Errors
    /// What keeps the realisation as a whole from going on (the store,
    /// the sandbox refused); a derivation's failure is its result's.
    pub fn realise(&self, store: &LocalStore, targets: &[StorePath], derivations: &Derivations) -> Result<BuildResults, BuildError> {
        let (substituted_paths, substituted) =
            if self.settings.check { (0, BTreeSet::new()) } else { self.substitute(targets, derivations)? };
        let (jobs, cached) = self.plan(store, targets, derivations)?;
        self.reporter.builds_planned(jobs.len(), cached.len());
        if !jobs.is_empty() {
            // Builds take a while: let collections run meanwhile.
            store.resume_collections()?;
            store.remove_dead_leftovers()?;
        }
        // Refuse to build unsandboxed unless asked: checked once, and only
        // when something is to be built.
        let sandboxed = jobs.values().any(|j| !j.drv.builder_path().starts_with("builtin:"));
        if sandboxed {
            for note in self.executor.prepare(&self.settings)? {
                self.reporter.message(&format!("note: {note}"));
            }
        }
        let mut result = BuildResults { substituted_paths, ..Default::default() };
        for (drv_path, outputs) in cached {
            let status = if substituted.contains(&drv_path) { BuildStatus::Substituted } else { BuildStatus::AlreadyValid };
            result.results.push(BuildResult { drv_path, status, outputs, error: None });
        }
        self.schedule(jobs, &mut result);
        let mut reports = std::mem::take(&mut *self.vary_reports.lock().unwrap_or_else(|p| p.into_inner()));
        reports.sort_by(|a, b| a.drv.cmp(&b.drv));
        result.vary_reports = reports;
        Ok(result)
    }

    /// Read the graph below `targets`: every derivation with an output
    /// that is not valid (or, with `check`, every non-download), and what
    /// it waits for.
    /// The jobs that realise `targets` and the derivations already valid.
    /// A target needs all its outputs; an input only those its dependents
    /// name (Nix's wanted outputs), so a `debug` output nothing uses is
    /// neither built nor substituted for a dependent.
    #[allow(clippy::type_complexity)]
    fn plan(
        &self,
        store: &LocalStore,
        targets: &[StorePath],
        derivations: &Derivations,
    ) -> Result<(BTreeMap<StorePath, Job>, Vec<(StorePath, BTreeMap<String, StorePath>)>), StoreError> {
        let mut jobs = BTreeMap::new();
        let mut cached = BTreeSet::new();
        let mut wanted = WantedOutputs::default();
        let mut queue: VecDeque<(StorePath, Option<BTreeSet<String>>)> = targets.iter().map(|t| (t.clone(), None)).collect();
        while let Some((drv_path, outputs)) = queue.pop_front() {
            if jobs.contains_key(&drv_path) {
                // A build makes every output.
                continue;
            }
            if wanted.covers(&drv_path, outputs.as_ref()) {
                continue;
            }
            let drv = derivations.get(store, &drv_path)?;
            let all = drv.outputs();
            if wanted.add(&drv_path, outputs, all).is_none() {
                continue;
            }
            // Kept from the collector until this process exits.
            store.add_temp_root(&drv_path)?;
            let mut valid = true;
            for name in &wanted.0[&drv_path] {
                let o = &all[name];
                store.add_temp_root(&o.path)?;
                valid &= store.is_valid(&o.path)?;
            }
            let check = valid && self.settings.check && !drv.is_fixed_output();
            if valid && !check {
                cached.insert(drv_path);
                continue;
            }
            cached.remove(&drv_path);
            let input_drvs = drv.input_derivations();
            let mut inputs = drv.input_sources();
            for (input, used) in &input_drvs {
                let outs = derivations.get(store, input)?;
                inputs.extend(used.iter().filter_map(|o| outs.outputs().get(o)).map(|o| o.path.clone()));
            }
            queue.extend(input_drvs.iter().map(|(d, o)| (d.clone(), Some(o.clone()))));
            let deps: BTreeSet<StorePath> = input_drvs.into_keys().collect();
            jobs.insert(drv_path.clone(), Job { drv_path, drv, deps, inputs, check });
        }
        // Inputs that turned out valid are not waited for.
        let pending: BTreeSet<StorePath> = jobs.keys().cloned().collect();
        for job in jobs.values_mut() {
            job.deps.retain(|d| pending.contains(d));
        }
        let cached = cached
            .into_iter()
            .map(|drv_path| {
                let all = derivations.get(store, &drv_path)?;
                let outputs = wanted.0[&drv_path].iter().map(|n| (n.clone(), all.outputs()[n].path.clone())).collect();
                Ok((drv_path, outputs))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((jobs, cached))
    }

    fn schedule(&self, mut jobs: BTreeMap<StorePath, Job>, result: &mut BuildResults) {
        let max_jobs = if jobs.is_empty() { 1 } else { or_cores(self.settings.max_jobs) };
        let (done_tx, done_rx) = std::sync::mpsc::channel::<(Arc<Job>, bool, Result<BuildStatus, BuildError>)>();
        // Builds and downloads are limited apart.
        let (mut building, mut downloading) = (0usize, 0usize);
        let mut stopping = false;
        std::thread::scope(|scope| loop {
            if !stopping {
                let ready: Vec<(StorePath, bool)> =
                    jobs.iter().filter(|(_, j)| j.deps.is_empty()).map(|(p, j)| (p.clone(), j.drv.is_fixed_output())).collect();
                for (p, download) in ready {
                    let slot = if download { &mut downloading } else { &mut building };
                    if *slot >= if download { MAX_DOWNLOADS } else { max_jobs } {
                        continue;
                    }
                    *slot += 1;
                    let job = Arc::new(jobs.remove(&p).expect("ready job exists"));
                    let tx = done_tx.clone();
                    scope.spawn(move || {
                        // A panic must still report, or the loop would wait
                        // for this job for ever.
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.realise_one(&job)))
                            .unwrap_or_else(|_| Err(BuildError::Unsupported { drv: job.drv_path.to_string(), reason: "its build thread panicked".into() }));
                        let _ = tx.send((job, download, r));
                    });
                }
            }
            if building + downloading == 0 {
                break;
            }
            let (job, download, r) = done_rx.recv().expect("a worker is running");
            let drv = job.drv_path.clone();
            let outputs = |j: &Job| j.drv.outputs().iter().map(|(n, o)| (n.clone(), o.path.clone())).collect();
            if download {
                downloading -= 1;
            } else {
                building -= 1;
            }
            match r {
                Ok(status) => {
                    for j in jobs.values_mut() {
                        j.deps.remove(&drv);
                    }
                    result.results.push(BuildResult { drv_path: drv, status, outputs: outputs(&job), error: None });
                }
                Err(e) => {
                    // Everything that needs it cannot be built.
                    let mut dead = vec![drv.clone()];
                    while let Some(d) = dead.pop() {
                        let dependents: Vec<StorePath> =
                            jobs.iter().filter(|(_, j)| j.deps.contains(&d)).map(|(p, _)| p.clone()).collect();
                        for p in dependents {
                            let dependent = jobs.remove(&p).expect("a pending job");
                            let store_dir = self.layout.store_dir();
                            let error = BuildError::DependencyFailed { drv: store_dir.display(&p), dependency: store_dir.display(&drv) };
                            result.results.push(BuildResult {
                                drv_path: p.clone(),
                                status: BuildStatus::DependencyFailed,
                                outputs: outputs(&dependent),
                                error: Some(error),
                            });
                            dead.push(p);
                        }
                    }
                    let status = BuildStatus::of_error(&e);
                    result.results.push(BuildResult { drv_path: drv, status, outputs: outputs(&job), error: Some(e) });
                    if !self.settings.keep_going {
                        stopping = true;
                    }
                }
            }
        });
    }

    /// Realise one job: wait for other processes making the same
    /// outputs (their locks), then build it, unless they made it.
    fn realise_one(&self, job: &Job) -> Result<BuildStatus, BuildError> {
        self.with_store(|store| {
            let outputs = job.drv.outputs();
            // Another drv process may be building the same outputs: wait
            // for it, then reuse what it made.
            let locks = store.lock_paths(outputs.values().map(|o| o.path.clone()))?;
            if !job.check {
                let mut all_valid = true;
                for o in outputs.values() {
                    all_valid &= store.is_valid(&o.path)?;
                }
                if all_valid {
                    return Ok(BuildStatus::AlreadyValid);
                }
            }
            self.reporter.build_started(&job.drv_path);
            let r = if job.drv.is_fixed_output() {
                self.fetch(store, job, &locks)
            } else if job.drv.builder_path() == ROOTFS_BUILDER {
                self.assemble_rootfs(store, job, &locks)
            } else {
                self.build(store, job, &locks)
            };
            self.reporter.build_finished(&job.drv_path, r.is_ok());
            r.map(|()| BuildStatus::Built)
        })
    }

    /// A fixed-output derivation: download, verify, register.
    fn fetch(&self, store: &mut LocalStore, job: &Job, locks: &PathLocks) -> Result<(), BuildError> {
        let drv = &job.drv;
        let unsupported = |reason: &str| BuildError::Unsupported { drv: store.display(&job.drv_path), reason: reason.to_owned() };
        if drv.builder_path() != FETCH_BUILDER {
            return Err(unsupported("fixed-output derivations must use the builtin:fetchurl builder"));
        }
        let out = &drv.outputs()["out"];
        let Some(ContentAddress::Flat(expected)) = out.fixed else {
            return Err(unsupported("only flat sha256 downloads are supported"));
        };
        let env = |k: &str| drv.env().get(k).map(|v| String::from_utf8_lossy(v).into_owned());
        let Some(source) = builtins::fetch_source(env) else {
            return Err(unsupported("a download names a `url` or a Python index file"));
        };
        let staging = store.staging()?;
        if let Err(e) = self.fetcher()?.fetch_to(&source, expected, &staging.path()) {
            return Err(debian_fetch_error(&source, &e).unwrap_or(BuildError::Fetch(e)));
        }
        let nar_hash = nar::hash_path(&staging.path()).map_err(StoreError::from)?;
        let mut new = NewPath::new(out.path.clone(), staging, nar_hash);
        new.deriver = Some(job.drv_path.clone());
        new.ca = Some(ContentAddress::Flat(expected));
        let outputs = BTreeMap::from([("out".to_owned(), out.path.clone())]);
        store.add_valid(locks, vec![new], Some(OutputsOf { drv_path: &job.drv_path, outputs: &outputs }))?;
        Ok(())
    }

    /// Build in the sandbox, then register (or, checking, compare; with
    /// `vary`, find what the outputs depend on).
    fn build(&self, store: &mut LocalStore, job: &Job, locks: &PathLocks) -> Result<(), BuildError> {
        if job.check {
            if let Some(variations) = &self.settings.vary {
                return self.check_varied(store, job, variations);
            }
        }
        let built = self.build_once(store, job, &Circumstances::default(), &log_file(store, &job.drv_path))?;
        self.register_outputs(store, job, built.staged, &built.candidates, locks)
    }

    /// `--check --vary`: rebuild `job` under drv's own circumstances twice
    /// at the same moment, then under `variations`, and narrow what
    /// differs down to them ([`crate::vary::narrow`]). The report goes to
    /// [`BuildResults::vary_reports`]; a difference is an error.
    ///
    /// The clock cannot be set for one build, so [`Variation::Time`] is
    /// judged by timing: the two first builds start together on a second
    /// boundary. Outputs they agree on but that differ from the registered
    /// ones (built at another time) depend on the time; outputs on which
    /// they disagree depend on something no variation holds still
    /// (randomness, sub-second time, scheduling). When the time matters,
    /// each varied build is compared with a build under drv's own
    /// circumstances started at the same moment, so that the clock does not
    /// count as the variation's doing.
    fn check_varied(&self, store: &mut LocalStore, job: &Job, variations: &[Variation]) -> Result<(), BuildError> {
        let shown = store.display(&job.drv_path);
        let mut registered = BTreeMap::new();
        // Only valid outputs can be compared: a dependent may have wanted
        // (and substituted) some of them only.
        for (name, o) in job.drv.outputs() {
            if let Some(info) = store.path_info(&o.path)? {
                registered.insert(name, (store.real_path(&o.path), info.nar_hash, o.path.clone()));
            }
        }
        let logs = store.layout().vary_log_dir(&job.drv_path);
        let mut report = VaryReport { drv: shown.clone(), varied: variations.to_vec(), ..Default::default() };
        report.logs.push(logs.display().to_string());
        let mut others = Vec::new();
        for &v in variations {
            match self.why_not_varied(store, v) {
                _ if v == Variation::Time => {}
                Some(reason) => report.not_varied.push(NotVaried { variation: v, reason }),
                None => others.push(v),
            }
        }
        let trials = Trials { realiser: self, job, logs, count: std::sync::atomic::AtomicUsize::new(0) };

        let (c1, c2) = trials.pair(store, &[], &[], "control-1", "control-2")?;
        let (c1, c2) = match (c1, c2) {
            (Trial::Built(a), Trial::Built(b)) => (a, b),
            (Trial::Failed(e), _) | (_, Trial::Failed(e)) => return Err(e),
        };
        let mut keep: Option<BTreeMap<String, (Staging, drv_formats::Sha256)>> = None;
        if let Some(d) = compare_built(&c1, &c2) {
            report.uncontrolled = Some(d);
            keep = Some(c2);
        } else {
            let against_registered: Vec<OutputDifference> = registered
                .iter()
                .filter_map(|(name, (real, hash, _))| {
                    let (staging, got) = c1.get(name.as_str())?;
                    (got != hash).then(|| OutputDifference { output: name.to_string(), differences: differences(real, &staging.path()) })
                })
                .collect();
            let time_matters = !against_registered.is_empty();
            if time_matters {
                report.causes.push(Cause { variations: vec![Variation::Time], outputs: against_registered });
            }
            if !others.is_empty() {
                // Compared with a build at the same moment when the clock
                // matters, else with the first control.
                let differs = |store: &mut LocalStore, set: &[Variation], label: &str| -> Result<(Option<Vec<OutputDifference>>, Trial), BuildError> {
                    if time_matters {
                        let (control, varied) = trials.pair(store, &[], set, &format!("control-for-{label}"), label)?;
                        let control = match control {
                            Trial::Built(control) => control,
                            Trial::Failed(e) => return Err(e),
                        };
                        Ok((compare_trial(&control, &varied), varied))
                    } else {
                        let varied = trials.one(store, set, label)?;
                        Ok((compare_trial(&c1, &varied), varied))
                    }
                };
                let (all, all_trial) = differs(store, &others, "all")?;
                if let Some(all) = all {
                    if let Trial::Built(built) = all_trial {
                        keep.get_or_insert(built);
                    }
                    let found = crate::vary::narrow(&others, all, |set| {
                        differs(store, set, &label_of(set)).map(|(d, _)| d)
                    })?;
                    report.causes.extend(found.into_iter().map(|(variations, outputs)| Cause { variations, outputs }));
                }
            }
            if time_matters {
                keep = Some(c1);
            }
        }
        report.builds = trials.count.load(std::sync::atomic::Ordering::Relaxed);
        report.reproducible = report.causes.is_empty() && report.uncontrolled.is_none();
        // The second result of each differing output stays beside the
        // registered one, as `--check` leaves it (until the next GC).
        if let Some(kept) = keep {
            for (name, (staging, hash)) in kept {
                let Some((_, registered_hash, path)) = registered.get(&name) else { continue };
                if &hash == registered_hash {
                    continue;
                }
                let at = store.real_store_dir().join(format!("{}.check", path.to_basename()));
                nar::remove_tree(&at).map_err(|e| StoreError::io(&at, e))?;
                fs::rename(staging.path(), &at).map_err(|e| StoreError::io(&at, e))?;
                report.kept.push(at.display().to_string());
                if let Some(line) = diffoscope_line(store, &store.real_path(path), &at, path) {
                    report.diffoscope.push(line);
                }
            }
        }
        let reproducible = report.reproducible;
        let summary = report_summary(&report);
        self.vary_reports.lock().unwrap_or_else(|p| p.into_inner()).push(report);
        if reproducible {
            Ok(())
        } else {
            Err(BuildError::NotReproducible { drv: shown, summary })
        }
    }

    /// Why `variation` cannot be applied here, if it cannot.
    fn why_not_varied(&self, store: &LocalStore, variation: Variation) -> Option<String> {
        if variation != Variation::FileOrder {
            return None;
        }
        if self.settings.keep_failed {
            return Some("with --keep-failed every build directory is on the store's file system already".into());
        }
        let builds = store.layout().builds_dir();
        let _ = fs::create_dir_all(&builds);
        match nix::sys::statfs::statfs(&builds) {
            Ok(fs) if fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC => {
                Some(format!("{} is on a tmpfs, like the sandbox's own build directory", builds.display()))
            }
            Ok(_) => None,
            Err(e) => Some(format!("cannot tell the file system of {}: {e}", builds.display())),
        }
    }

    /// One build of `job` under `circumstances`, its log at `log_path`: its
    /// outputs staged (not canonicalised), and the paths they may refer to.
    fn build_once(
        &self,
        store: &mut LocalStore,
        job: &Job,
        circumstances: &Circumstances,
        log_path: &Path,
    ) -> Result<Built, BuildError> {
        let drv = &job.drv;
        let shown = store.display(&job.drv_path);
        let outputs = drv.outputs();

        // What the build may see: the closure of its inputs. Temporary
        // roots first: the collector then either kept them or is done
        // before they are used.
        for p in &job.inputs {
            store.add_temp_root(p)?;
        }
        let closure = store.closure(&job.inputs)?;
        for p in &closure {
            store.add_temp_root(p)?;
        }

        let builds = store.layout().builds_dir();
        fs::create_dir_all(&builds).map_err(|e| StoreError::io(&builds, e))?;
        // Both directories the builder sees get fixed modes, whatever the
        // caller's umask (tempfile and `create_dir` apply it): a build that
        // archives `.` or lists `$NIX_STORE` must not depend on it. The
        // modes are Nix's: 0700 for the build directory
        // (DerivationBuilder's createTempDir) and 01775 for the sandbox's
        // store directory (src/libstore/unix/build/derivation-builder.cc).
        let build_dir = tempfile::Builder::new()
            .prefix(&format!("{}-", drv.name()))
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(&builds)
            .map_err(|e| StoreError::io(&builds, e))?;
        fs::set_permissions(build_dir.path(), fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::io(build_dir.path(), e))?;

        // The builder sees this (empty, writable) directory as the store;
        // it is inside the store's file system, so outputs are renamed out.
        let scratch = store.staging()?;
        fs::create_dir(scratch.path()).map_err(|e| StoreError::io(&scratch.path(), e))?;
        fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o1775))
            .map_err(|e| StoreError::io(&scratch.path(), e))?;

        let dirs = BuildDirs { scratch_store: &scratch.path(), build_dir: build_dir.path() };
        let settings = BuildSettings { cores: or_cores(self.settings.cores), ..self.settings.clone() };
        let request = build_request(&job.drv_path, drv, store.layout(), &closure, dirs, &settings, circumstances)?;
        let spec = &request.spec;

        let (status, tail) = match self.run_logged(&request, log_path)? {
            (Ok(status), tail) => (status, tail),
            // Nothing was registered: the scratch store and build
            // directory go with their guards, as for any failed build.
            (Err(drv_sandbox::SandboxError::LimitExceeded { hit, .. }), tail) => {
                return Err(BuildError::LimitExceeded {
                    drv: shown,
                    hit,
                    tail: tail.join("\n"),
                    log: log_path.display().to_string(),
                });
            }
            (Err(e), _) => return Err(e.into()),
        };
        if !status.success() {
            let kept = if self.settings.keep_failed {
                let p = build_dir.keep();
                format!(" (build directory kept at {})", p.display())
            } else {
                String::new()
            };
            return Err(BuildError::Failed {
                drv: shown,
                status: format!("{status}{kept}"),
                tail: tail.join("\n"),
                log: log_path.display().to_string(),
            });
        }

        // Each output moves from the scratch store to a staging place of
        // its own, which the store's door (`add_valid`) renames into place.
        let mut staged: Vec<(String, StorePath, Staging)> = Vec::new();
        for (name, o) in outputs {
            let built = spec.host_path(Path::new(&store.display(&o.path)));
            if fs::symlink_metadata(&built).is_err() {
                return Err(BuildError::MissingOutput { drv: shown, output: name.clone(), path: store.display(&o.path) });
            }
            let staging = store.staging()?;
            fs::rename(&built, staging.path()).map_err(|e| StoreError::io(&built, e))?;
            staged.push((name.clone(), o.path.clone(), staging));
        }
        drop(scratch);

        // References: inputs of the closure and the outputs themselves.
        let mut candidates = closure.clone();
        candidates.extend(outputs.values().map(|o| o.path.clone()));
        Ok(Built { staged, candidates })
    }

    /// Canonicalise and scan each staged output, then register them all
    /// with the derivation as deriver (or, checking, compare each with the
    /// registered one).
    fn register_outputs(
        &self,
        store: &mut LocalStore,
        job: &Job,
        staged: Vec<(String, StorePath, Staging)>,
        candidates: &BTreeSet<StorePath>,
        locks: &PathLocks,
    ) -> Result<(), BuildError> {
        let shown = store.display(&job.drv_path);
        let mut news = Vec::new();
        for (name, path, mut staging) in staged {
            staging.canonicalise()?;
            let (nar_hash, references) = nar::scan_references(&staging.path(), candidates).map_err(StoreError::from)?;
            let mut new = NewPath::new(path, staging, nar_hash);
            new.references = references;
            new.deriver = Some(job.drv_path.clone());
            news.push((name, new));
        }

        if job.check {
            for (name, new) in news {
                // An output nothing wanted before is not valid: nothing to
                // compare it with.
                let Some(registered) = store.path_info(&new.path)? else { continue };
                if registered.nar_hash != new.nar_hash.sha256 {
                    let (staging, path) = (new.staging, new.path);
                    let kept = store.real_store_dir().join(format!("{}.check", path.to_basename()));
                    nar::remove_tree(&kept).map_err(|e| StoreError::io(&kept, e))?;
                    fs::rename(staging.path(), &kept).map_err(|e| StoreError::io(&kept, e))?;
                    let mut differences = differences(&store.real_path(&path), &kept);
                    differences.extend(diffoscope_line(store, &store.real_path(&path), &kept, &path));
                    return Err(BuildError::NotDeterministic {
                        drv: shown,
                        output: name,
                        kept: kept.display().to_string(),
                        differences: differences.join("\n"),
                    });
                }
            }
            return Ok(());
        }

        let names: BTreeMap<String, StorePath> = news.iter().map(|(n, new)| (n.clone(), new.path.clone())).collect();
        let news = news.into_iter().map(|(_, new)| new).collect();
        store.add_valid(locks, news, Some(OutputsOf { drv_path: &job.drv_path, outputs: &names }))?;
        Ok(())
    }
    /// A toolchain root file system: the `.deb`s named by `debs`, unpacked
    /// by drv itself (no host tool, no maintainer script) and checked.
    /// The log records the packages and what was made.
    fn assemble_rootfs(&self, store: &mut LocalStore, job: &Job, locks: &PathLocks) -> Result<(), BuildError> {
        let drv = &job.drv;
        let shown = store.display(&job.drv_path);
        let unsupported = |reason: String| BuildError::Unsupported { drv: shown.clone(), reason };
        let outputs = drv.outputs();
        let out = outputs.get("out").filter(|_| outputs.len() == 1).ok_or_else(|| unsupported(format!("{ROOTFS_BUILDER} makes exactly one output, `out`")))?;
        // Only the outputs of declared input derivations may be read.
        let sources = drv.input_sources();
        let inputs: BTreeSet<&StorePath> = job.inputs.iter().filter(|p| !sources.contains(*p)).collect();
        let listed = drv.env().get("debs").map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        let mut debs = Vec::new();
        for arg in listed.split_whitespace() {
            let p = store.parse_path_arg(arg)?;
            if !inputs.contains(&p) {
                return Err(unsupported(format!("{arg} is not an output of one of the derivation's inputs")));
            }
            store.add_temp_root(&p)?;
            if !store.is_valid(&p)? {
                return Err(StoreError::NotValid(arg.to_owned()).into());
            }
            debs.push(store.real_path(&p));
        }
        if debs.is_empty() {
            return Err(unsupported("`debs` names no .deb".into()));
        }
        let staging = store.staging()?;
        // drv's own unpacking, not a builder's work: `--cores` (the
        // builders' NIX_BUILD_CORES) does not limit it, and the result does
        // not depend on the threads.
        let options = drv_debian::rootfs::AssembleOptions { jobs: available_cores() };
        let started = std::time::Instant::now();
        let assembled = drv_debian::rootfs::assemble(&debs, &staging.path(), &options)?;
        let mut log = format!("drv: assembling {} packages with {} threads\n", assembled.packages.len(), options.jobs);
        for p in &assembled.packages {
            log.push_str(&format!("  {} {} {}\n", p.package, p.version, p.architecture));
        }
        log.push_str(&format!(
            "drv: {} files, {} bytes in {:.2} s\n",
            assembled.files,
            assembled.bytes,
            started.elapsed().as_secs_f64()
        ));
        for line in log.lines() {
            self.reporter.build_log_line(&job.drv_path, line);
        }
        let log_path = log_file(store, &job.drv_path);
        if let Some(dir) = log_path.parent() {
            fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        let compressed = zstd::encode_all(log.as_bytes(), 3).map_err(|e| StoreError::io(&log_path, e))?;
        fs::write(&log_path, compressed).map_err(|e| StoreError::io(&log_path, e))?;
        let staged = vec![("out".to_owned(), out.path.clone(), staging)];
        self.register_outputs(store, job, staged, &BTreeSet::from([out.path.clone()]), locks)
    }

    /// Run the builder with its output going to the log (zstd) and to the
    /// reporter line by line; returns the sandbox's result (kept apart so
    /// that a failure still has its log) and the log's tail.
    fn run_logged(
        &self,
        request: &BuildRequest,
        log_path: &Path,
    ) -> Result<(Result<std::process::ExitStatus, drv_sandbox::SandboxError>, Vec<String>), BuildError> {
        let drv_path = &request.drv_path;
        if let Some(dir) = log_path.parent() {
            fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        let (reader, writer) = std::io::pipe().map_err(|e| StoreError::io(log_path, e))?;
        // The live log first: a reader that finds none reads the `.zst`.
        let mut live = drv_store::LiveLog::create(&drv_store::live_of(log_path))?;
        let log_file = fs::File::create(log_path).map_err(|e| StoreError::io(log_path, e))?;
        let reporter = self.reporter.clone();
        std::thread::scope(|s| {
            let logger = s.spawn(move || -> std::io::Result<Vec<String>> {
                let mut z = zstd::Encoder::new(log_file, 3)?;
                let mut tail = VecDeque::new();
                let mut lines = std::io::BufReader::new(reader);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if lines.read_until(b'\n', &mut line)? == 0 {
                        break;
                    }
                    z.write_all(&line)?;
                    live.write_all(&line)?;
                    let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    reporter.build_log_line(drv_path, &text);
                    if tail.len() == LOG_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(text);
                }
                z.finish()?;
                live.finish();
                Ok(tail.into())
            });
            let status = self.executor.execute(request, std::os::fd::OwnedFd::from(writer));
            let tail = logger.join().expect("log thread panicked").map_err(|e| StoreError::io(log_path, e))?;
            Ok((status, tail))
        })
    }
}

/// A pinned `.deb` (`mirror://NAME/pool/…/NAME_VERSION_ARCH.deb`) that its
/// mirror no longer has, or has with other bytes, as the error that says
/// so in the lock's terms (package, version, hex sha256) and what to do.
fn debian_fetch_error(source: &FetchSource, error: &crate::fetch::FetchError) -> Option<BuildError> {
    use crate::fetch::FetchError;
    let FetchSource::Url(url) = source else { return None };
    let (mirror, path) = url.strip_prefix("mirror://")?.split_once('/')?;
    if !path.starts_with("pool/") {
        return None;
    }
    let file = path.rsplit('/').next()?.strip_suffix(".deb")?;
    let mut parts = file.split('_');
    let (package, version) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let (mirror, url) = (mirror.to_owned(), url.clone());
    let last = match error {
        FetchError::GaveUp { last, .. } => last.as_ref(),
        e => e,
    };
    match last {
        FetchError::NotFound { .. } | FetchError::NoSuchFile { .. } => {
            Some(BuildError::DebianFileGone { drv: String::new(), package, version, mirror, url })
        }
        FetchError::HashMismatch { expected, got, .. } => Some(BuildError::DebianHashMismatch(Box::new(DebianMismatch {
            package,
            version,
            mirror,
            url,
            expected: expected.to_hex(),
            got: got.to_hex(),
        }))),
        _ => None,
    }
}



/// The outputs of each derivation that something needs: all of a target's
/// (`None`), the named ones of an input.
#[derive(Default)]
struct WantedOutputs(BTreeMap<StorePath, BTreeSet<String>>);

impl WantedOutputs {
    /// Whether the named `outputs` of `drv` are wanted already, so that a
    /// derivation reached again through another dependent is not read
    /// again. A target's (`None`: all) is known only from the derivation.
    fn covers(&self, drv: &StorePath, outputs: Option<&BTreeSet<String>>) -> bool {
        match (self.0.get(drv), outputs) {
            (Some(have), Some(names)) => names.is_subset(have),
            _ => false,
        }
    }

    /// Add `outputs` (all of `all` for `None`; names `all` lacks are
    /// ignored) to what `drv` must provide; the outputs newly wanted, or
    /// `None` when nothing is new.
    fn add(
        &mut self,
        drv: &StorePath,
        outputs: Option<BTreeSet<String>>,
        all: &BTreeMap<String, drv_formats::DerivationOutput>,
    ) -> Option<BTreeSet<String>> {
        let requested = outputs.unwrap_or_else(|| all.keys().cloned().collect());
        let entry = self.0.entry(drv.clone()).or_default();
        let new: BTreeSet<String> = requested.into_iter().filter(|n| all.contains_key(n) && !entry.contains(n)).collect();
        if new.is_empty() {
            return None;
        }
        entry.extend(new.iter().cloned());
        Some(new)
    }
}
