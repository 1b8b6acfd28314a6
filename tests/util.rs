//! Shared helpers for integration tests.

use std::path::PathBuf;

/// The real NIH material shared with every developer and CI (`../shared/data/nih`). Tests that
/// need it fail loudly when it is missing rather than skipping.
#[allow(dead_code)]
pub fn nih_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nih");
    assert!(
        dir.join("Data_Entry_2017_v2020.csv.gz").is_file(),
        "real NIH test data missing at {}: CI and developers must have ../shared/data/nih",
        dir.display()
    );
    dir
}
