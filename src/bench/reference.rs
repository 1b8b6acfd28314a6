//! The Python side of the reference benchmarks: a `--python` interpreter checked before a long
//! run, or benches/.venv made on first use with the packages a script needs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the Python reference could not run; the benchmark report shows it in place of figures.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--python {}: {why}; give a Python that has {module}, or leave out --python (and CXR8_PYTHON) to use benches/.venv", python.display())]
    NoModule {
        python: PathBuf,
        module: String,
        why: String,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("{module} installed but `import {module}` still fails")]
    StillMissing { module: String },
    #[error("{} not found", .0.display())]
    NoScript(PathBuf),
    #[error("unexpected output from {}: {source}", script.display())]
    Output {
        script: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Runs `program` with `args`; its stderr is the error when it fails.
fn run(program: &Path, args: &[OsString]) -> Result<std::process::Output, ReferenceError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| ReferenceError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    if out.status.success() {
        return Ok(out);
    }
    let command = std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    Err(ReferenceError::Failed {
        command,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Whether `python` (a `--python` interpreter, used as it is) has `module`; the error names the
/// interpreter and says why not. Finds the module without importing it (torch takes seconds).
pub(super) fn check_python_module(python: &Path, module: &str) -> Result<(), ReferenceError> {
    let code = format!("import importlib.util, sys; sys.exit(importlib.util.find_spec('{module}') is None)");
    let why = match Command::new(python).args(["-c", &code]).output() {
        Ok(out) if out.status.success() => return Ok(()),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
                Some(line) => format!("checking failed: {}", line.trim()),
                None => format!("`import {module}` would fail: it is not installed there"),
            }
        }
        Err(e) => format!("cannot run it ({e})"),
    };
    Err(ReferenceError::NoModule {
        python: python.to_path_buf(),
        module: module.to_string(),
        why,
    })
}

/// pip arguments that install torch from PyPI. Its Linux x86-64 wheels all need the nvidia-* CUDA
/// packages to import (even on the CPU; `--no-deps` fails at `import torch`), so this is the
/// plain install: ~5 GB in the venv, once (see BENCHMARKS.md).
pub(super) const TORCH_INSTALL: &[&[&str]] = &[&["install", "--quiet", "torch"]];

/// The venv's python, with `module` importable, creating benches/.venv and running each pip
/// argument list of `installs` when it is not.
pub(super) fn ensure_venv_package(
    benches: &Path,
    module: &str,
    installs: &[&[&str]],
) -> Result<PathBuf, ReferenceError> {
    let venv = benches.join(".venv");
    let python = venv.join("bin/python");
    let importable = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if importable(&python) {
        return Ok(python);
    }
    eprintln!("setting up {} with {module} (once)...", venv.display());
    let os_args = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
    if !python.is_file() {
        let create = [OsString::from("-m"), "venv".into(), venv.clone().into()];
        run(Path::new("python3"), &create)?;
    }
    for install in installs {
        run(&venv.join("bin/pip"), &os_args(install))?;
    }
    if importable(&python) {
        Ok(python)
    } else {
        Err(ReferenceError::StillMissing {
            module: module.to_string(),
        })
    }
}

/// benches/`name`, or why it cannot be run.
pub(super) fn script(benches: &Path, name: &str) -> Result<PathBuf, ReferenceError> {
    let script = benches.join(name);
    if script.is_file() {
        Ok(script)
    } else {
        Err(ReferenceError::NoScript(script))
    }
}

/// Runs a reference script with `python` and reads the JSON object it prints.
pub(super) fn run_script(
    python: &Path,
    script: &Path,
    mut args: Vec<OsString>,
) -> Result<serde_json::Value, ReferenceError> {
    args.insert(0, script.into());
    let out = run(python, &args)?;
    serde_json::from_slice(&out.stdout).map_err(|source| ReferenceError::Output {
        script: script.to_path_buf(),
        source,
    })
}

/// The benches/ folder: in the current directory when run from the crate root, else the source tree's.
pub(super) fn benches_dir() -> PathBuf {
    let here = Path::new("benches");
    if here.join("cache_reference.py").is_file() {
        here.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_that_cannot_run_or_import_is_named_in_the_error() {
        let missing = Path::new("/nonexistent/cxr8-test/python3");
        let why = check_python_module(missing, "torch").unwrap_err().to_string();
        assert!(
            why.contains("--python /nonexistent/cxr8-test/python3") && why.contains("cannot run"),
            "{why}"
        );

        // Only where a python3 is installed; the module is one no interpreter has.
        if Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            check_python_module(Path::new("python3"), "sys").unwrap();
            let why = check_python_module(Path::new("python3"), "cxr8_no_such_module")
                .unwrap_err()
                .to_string();
            assert!(
                why.contains("--python python3: `import cxr8_no_such_module` would fail"),
                "{why}"
            );
        }
    }
}
