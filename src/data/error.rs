//! The data layer's error type: every variant names the file, and where it can, the line and
//! column, so a user can open the file and fix it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A problem at a place in a CSV/text file. `line` is 1-based as an editor shows it.
    #[error("{}{}{}: {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default(), column.as_ref().map(|c| format!(", column '{c}'")).unwrap_or_default())]
    Csv {
        path: PathBuf,
        line: Option<u64>,
        column: Option<String>,
        message: String,
    },
    /// A file that is not in any format we read, with a hint of what we expected.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    /// An image that could not be decoded.
    #[error("{}: {message}", path.display())]
    Image { path: PathBuf, message: String },
    /// The batch loader refused its inputs.
    #[error(transparent)]
    Loader(#[from] super::loader::Error),
    /// Invalid arguments (e.g. split fractions that do not add up), with what to do instead.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
