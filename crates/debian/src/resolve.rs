//! TODO (resolver helper)
