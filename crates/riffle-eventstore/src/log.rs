//! The segment files.
