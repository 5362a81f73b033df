//! Finding and parsing a recipe and every recipe it reaches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Diagnostic, EvalError};
use crate::recipe::{self, Recipe, Spans};

/// A recipe and everything it depends on, parsed and checked.
#[derive(Debug, Clone)]
pub struct RecipeSet {
    /// The recipe that was asked for.
    pub root: PathBuf,
    pub recipes: BTreeMap<PathBuf, Recipe>,
    /// Every recipe, dependencies before their dependents.
    pub order: Vec<PathBuf>,
}

/// Load `entry` and, recursively, its dependencies. A dependency cycle is
/// an error listing the recipe files around the cycle.
pub fn load(entry: &Path) -> Result<RecipeSet, EvalError> {
    let entry = std::path::absolute(entry).map_err(|error| EvalError::Read { path: entry.to_owned(), error })?;
    let entry = recipe::normalize(&entry);
    let mut loader = Loader::default();
    loader.visit(&entry, None)?;
    Ok(RecipeSet { root: entry, recipes: loader.recipes, order: loader.order })
}

#[derive(Default)]
struct Loader {
    recipes: BTreeMap<PathBuf, Recipe>,
    spans: BTreeMap<PathBuf, (Spans, String)>,
    order: Vec<PathBuf>,
    /// The recipes being visited, outermost first: a cycle is a path back into it.
    stack: Vec<PathBuf>,
}

impl Loader {
    fn visit(&mut self, file: &Path, referrer: Option<&Path>) -> Result<(), EvalError> {
        if let Some(pos) = self.stack.iter().position(|p| p == file) {
            let mut cycle = self.stack[pos..].to_vec();
            cycle.push(file.to_owned());
            return Err(EvalError::Cycle(cycle));
        }
        if self.recipes.contains_key(file) {
            return Ok(());
        }
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(error) => {
                // Point at the dependency entry that names the missing file.
                if let Some(r) = referrer {
                    let (spans, text) = &self.spans[r];
                    if let Some(span) = spans.dependencies.get(file) {
                        return Err(Diagnostic::at(r, text, span.start, format!("dependency {}: {error}", file.display())).into());
                    }
                }
                return Err(EvalError::Read { path: file.to_owned(), error });
            }
        };
        let (recipe, spans) = recipe::parse(file, &text)?;
        let deps: Vec<PathBuf> = recipe.all_dependencies().cloned().collect();
        self.spans.insert(file.to_owned(), (spans, text));
        self.stack.push(file.to_owned());
        for d in &deps {
            self.visit(d, Some(file))?;
        }
        self.stack.pop();
        self.recipes.insert(file.to_owned(), recipe);
        self.order.push(file.to_owned());
        Ok(())
    }
}
