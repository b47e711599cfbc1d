//! Nothing here: this crate exists for its tests (`tests/ui.rs`), the app driven headless.
