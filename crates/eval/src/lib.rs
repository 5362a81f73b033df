//! Recipes to derivations (see issue: recipes and evaluation).
