//! What a build depends on beyond its derivation: `drv build --check
//! --vary`.
//!
//! A [`Variation`] changes one circumstance that no derivation names (the
//! build directory's path, the clock, the cores, the umask, the user, the
//! host name, the locale, the time zone, the environment, the order in
//! which directories list their entries). [`Circumstances::varied`] is what
//! a build gets under a set of them; [`narrow`] finds, from builds it asks
//! for, which variations (alone, or only together) change the outputs, as
//! reprotest's `--auto-build` does: all at once, then one at a time, then
//! bisection of what is left. The realiser runs the builds
//! ([`crate::realise`]); this module is pure.

use std::fmt;
use std::str::FromStr;

use drv_sandbox::{BuildDirFs, Conditions};
use serde::Serialize;

/// One circumstance of a build that `--vary` changes. Names (for the
/// command line, the text and the JSON reports) are those of [`Variation::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variation {
    BuildPath,
    Time,
    Cores,
    Umask,
    User,
    Hostname,
    Locale,
    Timezone,
    Env,
    FileOrder,
}

impl Variation {
    /// Every variation, in the order reports list them.
    pub const ALL: [Variation; 10] = [
        Variation::BuildPath,
        Variation::Time,
        Variation::Cores,
        Variation::Umask,
        Variation::User,
        Variation::Hostname,
        Variation::Locale,
        Variation::Timezone,
        Variation::Env,
        Variation::FileOrder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variation::BuildPath => "build-path",
            Variation::Time => "time",
            Variation::Cores => "cores",
            Variation::Umask => "umask",
            Variation::User => "user",
            Variation::Hostname => "hostname",
            Variation::Locale => "locale",
            Variation::Timezone => "timezone",
            Variation::Env => "env",
            Variation::FileOrder => "file-order",
        }
    }

    /// What the varied build gets instead of drv's fixed value.
    pub fn describe(self) -> &'static str {
        match self {
            Variation::BuildPath => "the build directory is /build-varied/path instead of /build",
            Variation::Time => "the build runs at another time (each rebuild runs later than the first build)",
            Variation::Cores => "one CPU fewer or more (scheduler affinity and NIX_BUILD_CORES)",
            Variation::Umask => "umask 0002 instead of 0022",
            Variation::User => "uid 2000, gid 200, user drvvary instead of 1000, 100, drvbld",
            Variation::Hostname => "host name drv-varied, domain name varied.invalid instead of localhost, (none)",
            Variation::Locale => "LC_ALL and LANG C.UTF-8 instead of LC_ALL=C",
            Variation::Timezone => "TZ=GMT-14 instead of TZ=UTC",
            Variation::Env => "variables a user might have set: EDITOR, PAGER, DISPLAY, CAPTURE_ENVIRONMENT",
            Variation::FileOrder => "the build directory on the store's file system instead of a tmpfs (another readdir order)",
        }
    }
}

impl fmt::Display for Variation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Variation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A variation name that is not one.
#[derive(Debug, thiserror::Error)]
#[error("unknown variation {name:?}; the variations are {}", Variation::ALL.map(|v| v.name()).join(", "))]
pub struct UnknownVariation {
    pub name: String,
}

impl FromStr for Variation {
    type Err = UnknownVariation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variation::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| UnknownVariation { name: s.to_owned() })
    }
}

/// `all`, or comma-separated names; sorted, without repetition.
pub fn parse_variations(text: &str) -> Result<Vec<Variation>, UnknownVariation> {
    if text.trim() == "all" {
        return Ok(Variation::ALL.to_vec());
    }
    let mut list = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Variation::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    list.sort();
    list.dedup();
    if list.is_empty() {
        return Err(UnknownVariation { name: text.to_owned() });
    }
    Ok(list)
}

/// The build directory's path under [`Variation::BuildPath`]: another
/// length and depth than `/build`.
pub const VARIED_BUILD_DIR: &str = "/build-varied/path";

/// What one build sees that its derivation does not say: the sandbox's
/// conditions and variables set over the derivation's and drv's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Circumstances {
    pub conditions: Conditions,
    /// Set last, over drv's fixed variables (`TZ`, `LC_ALL`, …).
    pub env: Vec<(String, String)>,
}

impl Default for Circumstances {
    /// drv's fixed circumstances: every build gets these.
    fn default() -> Self {
        Circumstances { conditions: Conditions::default(), env: Vec::new() }
    }
}

impl Circumstances {
    /// The circumstances under `variations`. `cores` is the build's
    /// `NIX_BUILD_CORES` and `available` the CPUs drv may use. [`Variation::Time`]
    /// changes nothing here: the clock cannot be set for one build
    /// (see [`narrow`]).
    pub fn varied(variations: &[Variation], cores: usize, available: usize) -> Self {
        let mut c = Circumstances::default();
        for v in variations {
            match v {
                Variation::BuildPath => c.conditions.build_dir = VARIED_BUILD_DIR.into(),
                Variation::Time => {}
                Variation::Cores => {
                    // Fewer CPUs when there are several, else more cores
                    // announced than there are: either way both `nproc`
                    // and NIX_BUILD_CORES change where they can.
                    if available > 1 {
                        c.conditions.cpus = Some(available - 1);
                    }
                    let varied = if cores > 1 { cores - 1 } else { cores + 1 };
                    c.env.push(("NIX_BUILD_CORES".into(), varied.to_string()));
                }
                Variation::Umask => c.conditions.umask = 0o002,
                Variation::User => {
                    c.conditions.uid = 2000;
                    c.conditions.gid = 200;
                    c.conditions.user = "drvvary".into();
                }
                Variation::Hostname => {
                    c.conditions.hostname = "drv-varied".into();
                    c.conditions.domainname = "varied.invalid".into();
                }
                Variation::Locale => {
                    c.env.push(("LC_ALL".into(), "C.UTF-8".into()));
                    c.env.push(("LANG".into(), "C.UTF-8".into()));
                }
                Variation::Timezone => c.env.push(("TZ".into(), "GMT-14".into())),
                Variation::Env => {
                    for (k, v) in [
                        ("CAPTURE_ENVIRONMENT", "i_capture_the_environment"),
                        ("DISPLAY", ":0"),
                        ("EDITOR", "vi"),
                        ("PAGER", "less"),
                    ] {
                        c.env.push((k.into(), v.into()));
                    }
                }
                Variation::FileOrder => c.conditions.build_dir_fs = BuildDirFs::Host,
            }
        }
        c
    }
}

/// How one output differs between two builds: a line per difference
/// (see [`crate::output_diff::tree_differences`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputDifference {
    pub output: String,
    pub differences: Vec<String>,
}

/// Variations that change the outputs: one alone, or several only together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cause {
    pub variations: Vec<Variation>,
    pub outputs: Vec<OutputDifference>,
}

/// What `--vary` found for one derivation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VaryReport {
    /// The derivation (`/store/…drv`).
    pub drv: String,
    pub reproducible: bool,
    /// The variations tried.
    pub varied: Vec<Variation>,
    /// Variations that could not be applied here, and why.
    pub not_varied: Vec<NotVaried>,
    /// What made the outputs differ.
    pub causes: Vec<Cause>,
    /// Two builds at the same moment under the same circumstances already
    /// differ: the build is nondeterministic (randomness, sub-second time,
    /// scheduling); no variation is to blame, and none was narrowed.
    pub uncontrolled: Option<Vec<OutputDifference>>,
    /// The second result of each differing output, kept beside its path.
    pub kept: Vec<String>,
    /// Where diffoscope's reports on the kept results are, when it is
    /// installed.
    pub diffoscope: Vec<String>,
    /// Logs of the builds made for this report.
    pub logs: Vec<String>,
    /// How many builds the report took.
    pub builds: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotVaried {
    pub variation: Variation,
    pub reason: String,
}

/// Find which of `variations` (none of them [`Variation::Time`]) change
/// the outputs, given that all of them together do. `differs(set)` builds
/// under `set` and compares with a build under none of them (made at the
/// same moment when the clock matters); it answers the differences, or
/// `None` when the outputs are the same.
///
/// One at a time first; then, if no single variation explains it or the
/// ones left over still change something together, bisection of those
/// left: a half that differs alone is narrowed further, and halves that
/// differ only together are reported as one cause.
pub fn narrow<E, D: Clone>(
    variations: &[Variation],
    all: D,
    mut differs: impl FnMut(&[Variation]) -> Result<Option<D>, E>,
) -> Result<Vec<(Vec<Variation>, D)>, E> {
    if variations.len() == 1 {
        return Ok(vec![(variations.to_vec(), all)]);
    }
    let mut causes = Vec::new();
    for &v in variations {
        if let Some(d) = differs(&[v])? {
            causes.push((vec![v], d));
        }
    }
    let rest: Vec<Variation> =
        variations.iter().copied().filter(|v| !causes.iter().any(|(c, _)| c.contains(v))).collect();
    if rest.len() < 2 {
        return Ok(causes);
    }
    let together = if causes.is_empty() { Some(all) } else { differs(&rest)? };
    if let Some(d) = together {
        bisect(&rest, d, &mut differs, &mut causes)?;
    }
    Ok(causes)
}

/// `set` differs as a whole and none of its members alone: find a
/// smallest combination that differs, report it, and go on with the rest.
fn bisect<E, D: Clone>(
    set: &[Variation],
    whole: D,
    differs: &mut impl FnMut(&[Variation]) -> Result<Option<D>, E>,
    causes: &mut Vec<(Vec<Variation>, D)>,
) -> Result<(), E> {
    let mut found = minimal(&[], set, differs)?;
    found.sort();
    let d = if found.len() == set.len() { Some(whole.clone()) } else { differs(&found)? };
    let Some(d) = d else {
        // Not monotonic (a variation that undoes another): the whole set.
        causes.push((set.to_vec(), whole));
        return Ok(());
    };
    causes.push((found.clone(), d));
    let rest: Vec<Variation> = set.iter().copied().filter(|v| !found.contains(v)).collect();
    if rest.len() >= 2 {
        if let Some(d) = differs(&rest)? {
            bisect(&rest, d, differs, causes)?;
        }
    }
    Ok(())
}

/// A smallest part of `candidates` that, with `fixed`, changes the
/// outputs, given that all of them with `fixed` do and `fixed` alone does
/// not (the binary search of delta debugging).
fn minimal<E, D>(
    fixed: &[Variation],
    candidates: &[Variation],
    differs: &mut impl FnMut(&[Variation]) -> Result<Option<D>, E>,
) -> Result<Vec<Variation>, E> {
    if candidates.len() <= 1 {
        return Ok(candidates.to_vec());
    }
    let (a, b) = candidates.split_at(candidates.len() / 2);
    let with = |extra: &[Variation]| [fixed, extra].concat();
    if differs(&with(a))?.is_some() {
        return minimal(fixed, a, differs);
    }
    if differs(&with(b))?.is_some() {
        return minimal(fixed, b, differs);
    }
    // Some of each half, together.
    let from_a = minimal(&with(b), a, differs)?;
    let from_b = minimal(&with(&from_a), b, differs)?;
    Ok([from_a, from_b].concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::convert::Infallible;
    use Variation::*;

    #[test]
    fn names_round_trip_and_lists_parse() {
        for v in Variation::ALL {
            assert_eq!(v.name().parse::<Variation>().unwrap(), v);
        }
        assert_eq!(parse_variations("all").unwrap(), Variation::ALL.to_vec());
        assert_eq!(parse_variations("umask, time,umask").unwrap(), vec![Time, Umask]);
        let e = parse_variations("umask,clock").unwrap_err();
        assert!(e.to_string().contains("\"clock\"") && e.to_string().contains("file-order"), "{e}");
        assert!(parse_variations("").is_err() && parse_variations(",").is_err());
    }

    #[test]
    fn each_variation_changes_something_and_only_its_own() {
        let base = Circumstances::varied(&[], 4, 4);
        assert_eq!(base, Circumstances::default());
        for v in Variation::ALL.into_iter().filter(|v| *v != Time) {
            let c = Circumstances::varied(&[v], 4, 4);
            assert_ne!(c, base, "{v}");
        }
        // One core only: more are announced.
        let c = Circumstances::varied(&[Cores], 1, 1);
        assert_eq!(c.conditions.cpus, None);
        assert_eq!(c.env, vec![("NIX_BUILD_CORES".to_owned(), "2".to_owned())]);
    }

    /// A fake build whose outputs depend on `causes` (sets that must all be
    /// present to change anything).
    fn run(variations: &[Variation], causes: &[&[Variation]]) -> (Vec<(Vec<Variation>, String)>, usize) {
        let mut builds = 0;
        let found = narrow::<Infallible, String>(variations, "all".into(), |set| {
            builds += 1;
            let present: BTreeSet<_> = set.iter().collect();
            let hit: Vec<String> = causes
                .iter()
                .filter(|c| c.iter().all(|v| present.contains(v)))
                .map(|c| c.iter().map(|v| v.name()).collect::<Vec<_>>().join("+"))
                .collect();
            Ok((!hit.is_empty()).then(|| hit.join(",")))
        })
        .unwrap();
        (found, builds)
    }

    #[test]
    fn narrowing_names_single_causes_and_combinations() {
        let all: Vec<Variation> = Variation::ALL.into_iter().filter(|v| *v != Time).collect();
        let (found, builds) = run(&all, &[&[Umask]]);
        assert_eq!(found, vec![(vec![Umask], "umask".to_owned())]);
        assert_eq!(builds, all.len() + 1);

        let (found, _) = run(&all, &[&[User], &[FileOrder]]);
        let names: Vec<_> = found.iter().map(|(v, _)| v.clone()).collect();
        assert_eq!(names, vec![vec![User], vec![FileOrder]]);

        // Only together: the pair is found by bisection.
        let (found, _) = run(&all, &[&[Locale, Timezone]]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, vec![Locale, Timezone], "{found:?}");

        // A single cause and, among the rest, a pair.
        let (found, _) = run(&all, &[&[Cores], &[Hostname, Env]]);
        assert_eq!(found[0].0, vec![Cores]);
        assert_eq!(found[1].0, vec![Hostname, Env], "{found:?}");
        assert_eq!(found.len(), 2, "{found:?}");

        // One variation asked for: no build beyond the first.
        let (found, builds) = run(&[Umask], &[&[Umask]]);
        assert_eq!((found.len(), builds), (1, 0));
    }
}
