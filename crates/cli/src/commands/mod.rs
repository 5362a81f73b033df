pub mod build;
pub mod eval;
pub mod gc;
pub mod hash;
pub mod path_info;
pub mod prefetch;
pub mod run;
pub mod store;
