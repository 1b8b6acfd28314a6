//! The Python side of the reference benchmarks: a `--python` interpreter checked before a long
//! run, or benches/.venv made on first use with the packages a script needs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether `python` (a `--python` interpreter, used as it is) has `module`; the error names the
/// interpreter and says why not. Finds the module without importing it (torch takes seconds).
pub(super) fn check_python_module(python: &Path, module: &str) -> Result<(), String> {
    let code = format!("import importlib.util, sys; sys.exit(importlib.util.find_spec('{module}') is None)");
    let out = Command::new(python)
        .args(["-c", &code])
        .output()
        .map_err(|e| format!("--python {}: cannot run it ({e})", python.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => format!("checking failed: {}", line.trim()),
        None => format!("`import {module}` would fail: it is not installed there"),
    };
    Err(format!(
        "--python {}: {why}; give a Python that has {module}, or leave out --python (and \
         CXR8_PYTHON) to use benches/.venv",
        python.display()
    ))
}

/// pip arguments that install torch from PyPI. Its Linux x86-64 wheels all need the nvidia-* CUDA
/// packages to import (even on the CPU; `--no-deps` fails at `import torch`), so this is the
/// plain install: ~5 GB in the venv, once (see BENCHMARKS.md).
pub(super) const TORCH_INSTALL: &[&[&str]] = &[&["install", "--quiet", "torch"]];

/// The venv's python, with `module` importable, creating benches/.venv and running each pip
/// argument list of `installs` when it is not.
pub(super) fn ensure_venv_package(benches: &Path, module: &str, installs: &[&[&str]]) -> Result<PathBuf, String> {
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
    let step = |program: &Path, step_args: &[&str]| -> Result<(), String> {
        let out = Command::new(program)
            .args(step_args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{} {}` failed: {}",
                program.display(),
                step_args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    if !python.is_file() {
        step(Path::new("python3"), &["-m", "venv", &venv.to_string_lossy()])?;
    }
    for install in installs {
        step(&venv.join("bin/pip"), install)?;
    }
    if importable(&python) {
        Ok(python)
    } else {
        Err(format!("{module} installed but `import {module}` still fails"))
    }
}

/// benches/`name`, or why it cannot be run.
pub(super) fn script(benches: &Path, name: &str) -> Result<PathBuf, String> {
    let script = benches.join(name);
    if script.is_file() {
        Ok(script)
    } else {
        Err(format!("{} not found", script.display()))
    }
}

/// Runs a reference script with `python` and reads the JSON object it prints; a failure is its
/// stderr in a message.
pub(super) fn run_script(python: &Path, script: &Path, args: Vec<OsString>) -> Result<serde_json::Value, String> {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("unexpected output from {}: {e}", script.display()))
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
        let why = check_python_module(missing, "torch").unwrap_err();
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
            let why = check_python_module(Path::new("python3"), "cxr8_no_such_module").unwrap_err();
            assert!(
                why.contains("--python python3: `import cxr8_no_such_module` would fail"),
                "{why}"
            );
        }
    }
}
