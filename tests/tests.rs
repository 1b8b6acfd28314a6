//! Integration tests: one crate, a module per area (real NIH files, the binary, end to end).

mod util;
mod web;
