pub mod cache;
pub mod eval;
pub mod hash;
pub mod key;
pub mod path_info;
pub mod prefetch;
pub mod store;
