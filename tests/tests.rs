//! Integration tests: one crate, a module per area (real NIH files, the binary, end to end).

mod bad_input;
mod bench;
mod browser;
mod demo;
mod e2e;
mod eval;
mod faults;
mod images;
mod nih_real;
mod predict;
mod properties;
mod security;
mod sse_load;
mod steps;
mod util;
mod web;
mod web_charts;
mod web_compare;
mod web_datasets;
mod web_form;
mod web_predict;
