//! drv's evaluator: recipes (TOML) to derivations.
//!
//! Layer 5 of 6 (docs/architecture.md, "Layers"): it may use every crate
//! below (the store to write `.drv` files, drv-realise for the builtins'
//! contract), never the CLI.
//!
//! [`load`] finds and checks a recipe and every recipe it reaches
//! ([`RecipeSet`]); [`lower`] turns them into Nix derivations, writes the
//! `.drv` files to the store and returns the DAG ([`Evaluation`]).
//! [`evaluate`] does both. Errors in recipes are [`Diagnostic`]s that point
//! at file, line and column.

mod cache;
mod error;
mod graph;
mod load;
mod lower;
mod recipe;

pub use cache::{evaluate_cached, EvaluationSummary};
pub use error::{shown as shown_path, Diagnostic, EvalError};
pub use graph::{Evaluation, Node, NodeKind};
pub use load::{glibc_version, load, load_unlocked, python_minor, PythonLockPins, RecipeSet};
pub use load::{lock_file_for, BUILTIN_LOCK, BUILTIN_LOCK_NAME};
pub use lower::{implied_packages, lower, LIBCXX_PACKAGES, LIBC_PACKAGES, LINKS_C, LINKS_CXX, PREBUILT_TOOLCHAIN, SYSTEM};
pub use recipe::{Recipe, Source};

use std::path::Path;

use drv_store::LocalStore;

/// Load `recipe` and everything it reaches, and lower it into `store`.
pub fn evaluate(recipe: &Path, store: &mut LocalStore) -> Result<Evaluation, EvalError> {
    let set = load(recipe)?;
    lower(&set, store)
}
