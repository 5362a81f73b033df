//! Why two derivations differ: `drv why-rebuild`.
//!
//! [`compare`] walks two derivations of the same thing (an earlier one and
//! today's) and their inputs together, as nix-diff does, and returns the
//! tree of first differences: at each level what changed in the
//! derivation itself (its build script, a variable, a source, a Debian
//! package) once the paths of changed inputs are mapped to their new
//! counterparts, and which inputs changed, recursively. Each input that
//! changed is described once. The CLI maps the changes to recipe lines.

use std::collections::{BTreeMap, BTreeSet};

use drv_formats::{ContentAddress, Derivation, StorePath};
use serde::Serialize;

use drv_store::LocalStore;
use drv_store::StoreError;

/// How one derivation differs from its earlier self.
#[derive(Clone, Debug, Serialize)]
pub struct DrvDiff {
    /// The derivation's name.
    pub name: String,
    pub old: String,
    pub new: String,
    /// What changed in the derivation itself.
    pub changes: Vec<Change>,
    /// Its input derivations that changed, each with why.
    pub inputs: Vec<DrvDiff>,
    /// Set when this pair was described already elsewhere in the tree.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub seen: bool,
}

/// One difference of a derivation from its earlier self.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    /// The builder's arguments (the build script) differ; the first
    /// differing line of each, numbered from 1.
    Script { line: usize, old: Option<String>, new: Option<String> },
    Builder { old: String, new: String },
    /// An environment variable (`None`: absent on that side).
    Env { key: String, old: Option<String>, new: Option<String> },
    /// A source added to the store from a file (by name).
    Source { name: String, old: Option<String>, new: Option<String> },
    /// A pinned `.deb`: another version, or added or removed.
    DebianPackage { package: String, old: Option<String>, new: Option<String> },
    /// An input derivation added or removed (by name).
    Input { name: String, old: Option<String>, new: Option<String> },
    /// A fixed-output download's pinned hash.
    FixedHash { old: String, new: String },
    Outputs { old: Vec<String>, new: Vec<String> },
}

/// Compare `old` with `new` (both `.drv` paths valid in `store`).
pub fn diff_derivations(store: &LocalStore, old: &StorePath, new: &StorePath) -> Result<DrvDiff, StoreError> {
    let mut seen = BTreeSet::new();
    walk(store, old, new, &mut seen)
}

fn read(store: &LocalStore, path: &StorePath) -> Result<Derivation, StoreError> {
    crate::realise::read_derivation(store, path)
}

/// The name a `.deb` download is known by, and its version, from the
/// derivation name `PACKAGE_VERSION_ARCH.deb`.
fn debian_package(drv_name: &str) -> Option<(String, String)> {
    let file = drv_name.strip_suffix(".drv").unwrap_or(drv_name).strip_suffix(".deb")?;
    let mut parts = file.split('_');
    let package = parts.next()?.to_owned();
    let version = parts.next()?.to_owned();
    Some((package, version))
}

fn walk(store: &LocalStore, old: &StorePath, new: &StorePath, seen: &mut BTreeSet<(StorePath, StorePath)>) -> Result<DrvDiff, StoreError> {
    let (a, b) = (read(store, old)?, read(store, new)?);
    let mut diff = DrvDiff {
        name: b.name().to_owned(),
        old: store.display(old),
        new: store.display(new),
        changes: Vec::new(),
        inputs: Vec::new(),
        seen: false,
    };
    if !seen.insert((old.clone(), new.clone())) {
        diff.seen = true;
        return Ok(diff);
    }
    // Old paths → new paths of everything matched by name, so that a
    // variable naming a changed input is not itself a difference.
    let mut renames: Vec<(String, String)> = Vec::new();
    let (oa, ob) = (a.outputs(), b.outputs());
    for (name, o) in oa {
        if let Some(n) = ob.get(name) {
            renames.push((store.display(&o.path), store.display(&n.path)));
        }
    }
    let keys = |o: &BTreeMap<String, drv_formats::DerivationOutput>| o.keys().cloned().collect::<Vec<_>>();
    if keys(&oa) != keys(&ob) {
        diff.changes.push(Change::Outputs { old: keys(&oa), new: keys(&ob) });
    }
    for (name, o) in oa {
        if let (Some(ContentAddress::Flat(x)), Some(n)) = (&o.fixed, ob.get(name)) {
            if let Some(ContentAddress::Flat(y)) = &n.fixed {
                if x != y {
                    diff.changes.push(Change::FixedHash { old: x.to_hex(), new: y.to_hex() });
                }
            }
        }
    }

    // Input derivations, by name.
    let by_name = |inputs: BTreeMap<StorePath, BTreeSet<String>>| -> BTreeMap<String, StorePath> {
        inputs.into_keys().map(|p| (p.name().to_owned(), p)).collect()
    };
    let (ia, ib) = (by_name(a.input_derivations()), by_name(b.input_derivations()));
    let mut changed = Vec::new();
    let mut removed_debs = BTreeMap::new();
    let mut added_debs = BTreeMap::new();
    for (name, p) in &ia {
        match ib.get(name) {
            Some(q) => {
                let (x, y) = (read(store, p)?, read(store, q)?);
                let (xo, yo) = (x.outputs(), y.outputs());
                for (o, xp) in xo {
                    if let Some(yp) = yo.get(o) {
                        renames.push((store.display(&xp.path), store.display(&yp.path)));
                    }
                }
                if p != q {
                    changed.push((p.clone(), q.clone()));
                }
            }
            None => match debian_package(name) {
                Some((package, version)) => {
                    removed_debs.insert(package, (version, p.clone()));
                }
                None => diff.changes.push(Change::Input { name: name.trim_end_matches(".drv").to_owned(), old: Some(store.display(p)), new: None }),
            },
        }
    }
    for (name, q) in &ib {
        if ia.contains_key(name) {
            continue;
        }
        match debian_package(name) {
            Some((package, version)) => {
                added_debs.insert(package, (version, q.clone()));
            }
            None => diff.changes.push(Change::Input { name: name.trim_end_matches(".drv").to_owned(), old: None, new: Some(store.display(q)) }),
        }
    }
    let packages: BTreeSet<&String> = removed_debs.keys().chain(added_debs.keys()).collect();
    for package in packages {
        let (old, new) = (removed_debs.get(package), added_debs.get(package));
        // The downloads' outputs appear in `debs`: map them too.
        if let (Some((_, p)), Some((_, q))) = (old, new) {
            let (x, y) = (read(store, p)?, read(store, q)?);
            if let (Some(xo), Some(yo)) = (x.outputs().get("out").cloned(), y.outputs().get("out").cloned()) {
                renames.push((store.display(&xo.path), store.display(&yo.path)));
            }
        }
        diff.changes.push(Change::DebianPackage {
            package: package.clone(),
            old: old.map(|(v, _)| v.clone()),
            new: new.map(|(v, _)| v.clone()),
        });
    }

    // Input sources, by name.
    let src_by_name = |s: BTreeSet<StorePath>| -> BTreeMap<String, StorePath> { s.into_iter().map(|p| (p.name().to_owned(), p)).collect() };
    let (sa, sb) = (src_by_name(a.input_sources()), src_by_name(b.input_sources()));
    let names: BTreeSet<&String> = sa.keys().chain(sb.keys()).collect();
    for name in names {
        let (x, y) = (sa.get(name), sb.get(name));
        if x == y {
            continue;
        }
        if let (Some(x), Some(y)) = (x, y) {
            renames.push((store.display(x), store.display(y)));
        }
        diff.changes.push(Change::Source {
            name: name.clone(),
            old: x.map(|p| store.display(p)),
            new: y.map(|p| store.display(p)),
        });
    }

    // The derivation's own text, with the old paths mapped to the new.
    // Longest first: a path is never a prefix of another, but be safe.
    renames.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
    let map = |text: &str| renames.iter().fold(text.to_owned(), |t, (o, n)| if o == n { t } else { t.replace(o, n) });
    if a.builder_path() != b.builder_path() {
        diff.changes.push(Change::Builder { old: a.builder_path().to_owned(), new: b.builder_path().to_owned() });
    }
    let (args_a, args_b) = (map(&a.args().join("\n")), b.args().join("\n"));
    if args_a != args_b {
        let (la, lb): (Vec<&str>, Vec<&str>) = (args_a.lines().collect(), args_b.lines().collect());
        let at = la.iter().zip(&lb).position(|(x, y)| x != y).unwrap_or(la.len().min(lb.len()));
        diff.changes.push(Change::Script {
            line: at + 1,
            old: la.get(at).map(|s| s.to_string()),
            new: lb.get(at).map(|s| s.to_string()),
        });
    }
    let text = |v: &Vec<u8>| String::from_utf8_lossy(v).into_owned();
    let env_keys: BTreeSet<&String> = a.env().keys().chain(b.env().keys()).collect();
    for key in env_keys {
        // Shown as the package or source that changed, not as the
        // variable listing them.
        if key == "debs" && diff.changes.iter().any(|c| matches!(c, Change::DebianPackage { .. })) {
            continue;
        }
        let (x, y) = (a.env().get(key).map(|v| map(&text(v))), b.env().get(key).map(text));
        if x != y {
            diff.changes.push(Change::Env { key: key.clone(), old: x, new: y });
        }
    }

    for (p, q) in changed {
        diff.inputs.push(walk(store, &p, &q, seen)?);
    }
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_downloads_are_known_by_package() {
        assert_eq!(debian_package("sed_4.9-1_amd64.deb.drv"), Some(("sed".into(), "4.9-1".into())));
        assert_eq!(debian_package("sed_4.9-1_amd64.deb"), Some(("sed".into(), "4.9-1".into())));
        assert_eq!(debian_package("zlib-1.2.13.tar.gz.drv"), None);
    }
}
