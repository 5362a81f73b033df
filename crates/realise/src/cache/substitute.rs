//! Substitution: fetching store paths from binary caches instead of
//! building them.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use drv_formats::{NarInfo, PublicKey, StoreDir, StorePath};

use super::{open_cache, parallel_map, restore_verified, BinaryCache, CacheError, CacheUrl, Result};
use drv_store::{LocalStore, Staging};
use crate::reporter::Reporter;
use drv_store::NewPath;

/// How a [`Substituter`] works.
#[derive(Clone, Debug)]
pub struct SubstituterOptions {
    /// Narinfo lookups in flight at once.
    pub lookups: usize,
    /// NARs downloaded (and unpacked) at once.
    pub downloads: usize,
}

impl Default for SubstituterOptions {
    fn default() -> Self {
        Self { lookups: 16, downloads: 4 }
    }
}

struct Cache {
    cache: Box<dyn BinaryCache>,
    /// Take this cache's paths without checking signatures (`?trusted=1`).
    trusted: bool,
    /// Set after a transport error or a wrong store directory: the cache
    /// is skipped for the rest of this substituter's life, as Nix does, so
    /// one dead cache costs one timeout, not one per path.
    disabled: AtomicBool,
    /// Whether `nix-cache-info` was checked yet (lazily, on first use).
    checked: Mutex<bool>,
}

/// A path some cache can supply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Substitutable {
    /// Index of the cache in the substituter's list.
    pub cache: usize,
    pub info: NarInfo,
}

/// What [`Substituter::substitute`] did.
#[derive(Debug, Default)]
pub struct SubstituteReport {
    /// Paths installed from a cache.
    pub substituted: BTreeSet<StorePath>,
    /// Paths asked for (or needed by them) that were valid already.
    pub already_valid: BTreeSet<StorePath>,
    /// Paths that could not be substituted: no cache has them, every
    /// cache's copy was refused, or something they need is in this set.
    /// The caller builds these (or fails).
    pub missing: BTreeSet<StorePath>,
    /// Why copies were refused or caches failed, in the order it happened.
    pub problems: Vec<CacheError>,
}

/// Asks binary caches for store paths and installs verified closures.
///
/// Caches are asked in order; the first one with an acceptable narinfo (in
/// our store directory, signed by a trusted key unless the cache is
/// trusted) supplies the path. A cache that fails (refused connection, 5xx)
/// is reported and skipped, never fatal.
pub struct Substituter {
    caches: Vec<Cache>,
    trusted_keys: Vec<PublicKey>,
    store_dir: StoreDir,
    options: SubstituterOptions,
    /// Paths a cache was asked for and did not have, so asking again in
    /// this process costs nothing.
    negative: Mutex<HashSet<(usize, StorePath)>>,
}

impl Substituter {
    /// Caches by URL (see [`CacheUrl`]: `?trusted=1` disables signature
    /// checks for that cache). `check_signatures = false` disables them for
    /// every cache.
    pub fn from_urls(
        urls: &[String],
        trusted_keys: Vec<PublicKey>,
        check_signatures: bool,
        store_dir: StoreDir,
    ) -> Result<Self> {
        let mut caches = Vec::new();
        for u in urls {
            let parsed = CacheUrl::parse(u)?;
            caches.push((open_cache(&parsed.url)?, parsed.trusted || !check_signatures));
        }
        Ok(Self::new(caches, trusted_keys, store_dir))
    }

    /// Caches given as backends, each with whether its paths are taken
    /// without a signature check.
    pub fn new(caches: Vec<(Box<dyn BinaryCache>, bool)>, trusted_keys: Vec<PublicKey>, store_dir: StoreDir) -> Self {
        Self {
            caches: caches
                .into_iter()
                .map(|(cache, trusted)| Cache { cache, trusted, disabled: AtomicBool::new(false), checked: Mutex::new(false) })
                .collect(),
            trusted_keys,
            store_dir,
            options: SubstituterOptions::default(),
            negative: Mutex::new(HashSet::new()),
        }
    }

    pub fn with_options(mut self, options: SubstituterOptions) -> Self {
        self.options = options;
        self
    }

    /// The caches' URLs, in order.
    pub fn urls(&self) -> Vec<&str> {
        self.caches.iter().map(|c| c.cache.url()).collect()
    }

    /// Which of `paths` some cache can supply, looked up in parallel.
    /// Refused narinfos and failing caches are reported to `reporter` and
    /// leave the path out (or to a later cache).
    pub fn query(&self, paths: &[StorePath], reporter: &dyn Reporter) -> BTreeMap<StorePath, Substitutable> {
        self.query_collecting(paths, reporter, &mut Vec::new())
    }

    fn query_collecting(
        &self,
        paths: &[StorePath],
        reporter: &dyn Reporter,
        problems: &mut Vec<CacheError>,
    ) -> BTreeMap<StorePath, Substitutable> {
        let results = parallel_map(paths, self.options.lookups, |p| self.query_one(p, reporter));
        let mut found = BTreeMap::new();
        for (path, (hit, errs)) in paths.iter().zip(results) {
            problems.extend(errs);
            if let Some(s) = hit {
                found.insert(path.clone(), s);
            }
        }
        found
    }

    /// Check a cache's `nix-cache-info` once; a cache for another store
    /// directory is disabled (its paths would have other hashes).
    fn check_cache(&self, index: usize) -> Result<()> {
        let c = &self.caches[index];
        let mut checked = c.checked.lock().unwrap();
        if *checked {
            return Ok(());
        }
        *checked = true;
        if let Some(info) = c.cache.cache_info()? {
            if !info.store_dir.is_empty() && info.store_dir != self.store_dir.as_str() {
                return Err(CacheError::ForeignCache {
                    cache: c.cache.url().to_owned(),
                    theirs: info.store_dir,
                    ours: self.store_dir.to_string(),
                });
            }
        }
        Ok(())
    }

    fn query_one(&self, path: &StorePath, reporter: &dyn Reporter) -> (Option<Substitutable>, Vec<CacheError>) {
        let mut errors = Vec::new();
        for (index, c) in self.caches.iter().enumerate() {
            if c.disabled.load(Ordering::Relaxed) || self.negative.lock().unwrap().contains(&(index, path.clone())) {
                continue;
            }
            let looked_up = self.check_cache(index).and_then(|()| c.cache.narinfo(&self.store_dir, path));
            match looked_up {
                Ok(Some(info)) => {
                    if !c.trusted && !info.has_valid_signature(&self.store_dir, &self.trusted_keys) {
                        let e = CacheError::Untrusted {
                            cache: c.cache.url().to_owned(),
                            path: self.store_dir.display(path),
                            signatures: info.signatures.clone(),
                            trusted: self.trusted_keys.iter().map(|k| k.name.clone()).collect(),
                        };
                        reporter.message(&format!("warning: {e}"));
                        errors.push(e);
                        continue;
                    }
                    return (Some(Substitutable { cache: index, info }), errors);
                }
                Ok(None) => {
                    self.negative.lock().unwrap().insert((index, path.clone()));
                }
                Err(e) => {
                    if matches!(e, CacheError::Transport { .. } | CacheError::HttpStatus { .. } | CacheError::S3Refused { .. } | CacheError::ForeignCache { .. }) {
                        // Only the first thread to disable it says so.
                        if !c.disabled.swap(true, Ordering::Relaxed) {
                            reporter.message(&format!("warning: disabling binary cache {}: {e}", c.cache.url()));
                        }
                    } else {
                        reporter.message(&format!("warning: {e}"));
                    }
                    errors.push(e);
                }
            }
        }
        (None, errors)
    }

    /// Make `paths` and their closures valid in `store` from the caches,
    /// as far as the caches have them.
    ///
    /// Contract:
    /// - paths already valid are skipped (and so are their closures);
    /// - narinfos of the whole closure are looked up level by level, each
    ///   level in parallel; NARs are downloaded several at once;
    /// - each NAR is streamed download → decompress → hash → unpack into a
    ///   staging directory of `store`, and accepted only if its NarHash and
    ///   NarSize are the narinfo's;
    /// - a path is registered (with the narinfo's references, deriver,
    ///   signatures and content address) only if its whole closure is valid
    ///   or installed with it; everything is registered in one transaction,
    ///   so the store never holds a path whose references are missing;
    /// - a path no cache supplies acceptably ends up in
    ///   [`SubstituteReport::missing`], with every path that needs it; the
    ///   error is `Err` only when the local store itself fails;
    /// - every path of the closures is a temporary root of this process
    ///   from before its validity is checked, so what was found valid stays
    ///   valid for the rest of the process (see [`drv_store::roots`]);
    /// - staging directories left by killed processes are removed first.
    pub fn substitute(
        &self,
        store: &mut LocalStore,
        paths: &BTreeSet<StorePath>,
        reporter: &dyn Reporter,
    ) -> Result<SubstituteReport> {
        let mut report = SubstituteReport::default();
        // Look the closure up level by level.
        let mut plan: BTreeMap<StorePath, Substitutable> = BTreeMap::new();
        let mut seen: BTreeSet<StorePath> = BTreeSet::new();
        let mut level: Vec<StorePath> = Vec::new();
        for p in paths {
            if seen.insert(p.clone()) {
                level.push(p.clone());
            }
        }
        while !level.is_empty() {
            let mut wanted = Vec::new();
            for p in level.drain(..) {
                // Rooted before its validity is read, so a collection
                // cannot delete it between this check and the install of
                // what refers to it (Nix: PathSubstitutionGoal::init calls
                // addTempRoot first).
                store.add_temp_root(&p)?;
                if store.is_valid(&p)? {
                    report.already_valid.insert(p);
                } else {
                    wanted.push(p);
                }
            }
            let found = self.query_collecting(&wanted, reporter, &mut report.problems);
            for p in wanted {
                match found.get(&p) {
                    Some(s) => {
                        for r in &s.info.references {
                            if seen.insert(r.clone()) {
                                level.push(r.clone());
                            }
                        }
                        plan.insert(p, s.clone());
                    }
                    None => {
                        report.missing.insert(p);
                    }
                }
            }
        }
        // A path is worth downloading only if its whole closure can be had.
        let unobtainable = propagate_missing(&plan, &report.missing);
        plan.retain(|p, _| !unobtainable.contains(p));
        report.missing.extend(unobtainable);

        // Stagings are made here, because a `LocalStore` stays on its
        // thread; the transfers only write into them.
        let mut jobs = Vec::new();
        if !plan.is_empty() {
            reporter.substitutions_planned(plan.len());
        }
        for (path, s) in &plan {
            jobs.push((path.clone(), s.clone(), Mutex::new(Some(store.staging()?))));
        }
        let fetched = parallel_map(&jobs, self.options.downloads, |(path, s, staging)| {
            let staging = staging.lock().unwrap().take().expect("each job runs once");
            self.fetch_nar(path, s, staging, reporter)
        });
        let mut ready: BTreeMap<StorePath, NewPath> = BTreeMap::new();
        let mut failed = BTreeSet::new();
        for ((path, _, _), result) in jobs.iter().zip(fetched) {
            match result {
                Ok(item) => {
                    ready.insert(path.clone(), item);
                }
                Err(e) => {
                    reporter.message(&format!("warning: {e}"));
                    report.problems.push(e);
                    failed.insert(path.clone());
                }
            }
        }
        let remaining: BTreeMap<StorePath, Substitutable> =
            plan.into_iter().filter(|(p, _)| !failed.contains(p)).collect();
        let unobtainable = propagate_missing(&remaining, &failed);
        ready.retain(|p, _| !unobtainable.contains(p));
        report.missing.extend(failed);
        report.missing.extend(unobtainable);

        // Locks in sorted order (a `BTreeMap`), so two substituting
        // processes never wait for each other in a cycle.
        let locks = store.lock_paths(ready.keys().cloned())?;
        report.substituted = ready.keys().cloned().collect();
        store.add_valid(&locks, ready.into_values().collect(), None)?;
        Ok(report)
    }

    /// Download, check and unpack one NAR into `staging`.
    fn fetch_nar(
        &self,
        path: &StorePath,
        s: &Substitutable,
        staging: Staging,
        reporter: &dyn Reporter,
    ) -> Result<NewPath> {
        let cache = &self.caches[s.cache].cache;
        let what = path.to_basename();
        let location = cache.location(&s.info.url);
        reporter.download_started(&what, &location, s.info.file_size);
        let result = (|| {
            let raw = cache.open_file(&s.info.url)?;
            let progress = ProgressReader { inner: raw, what: &what, reporter };
            restore_verified(Box::new(progress), &s.info, &self.store_dir, &staging)
        })();
        reporter.download_finished(&what);
        reporter.substitution_finished(path, result.is_ok());
        result?;
        Ok(NewPath::from_narinfo(staging, &s.info))
    }
}

/// Every path of `plan` that needs (directly or not) one of `missing`.
fn propagate_missing(plan: &BTreeMap<StorePath, Substitutable>, missing: &BTreeSet<StorePath>) -> BTreeSet<StorePath> {
    let mut out = BTreeSet::new();
    loop {
        let before = out.len();
        for (p, s) in plan {
            if !out.contains(p) && s.info.references.iter().any(|r| r != p && (missing.contains(r) || out.contains(r))) {
                out.insert(p.clone());
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

struct ProgressReader<'a, R> {
    inner: R,
    what: &'a str,
    reporter: &'a dyn Reporter,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.reporter.download_progress(self.what, n as u64);
        Ok(n)
    }
}
