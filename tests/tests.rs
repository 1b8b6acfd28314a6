//! Integration tests: one crate, a module per area (real NIH files, the binary, end to end).

mod nih_real;
mod eval;
mod images;
mod util;
mod demo;
