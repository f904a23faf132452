//! The in-memory indexes.
