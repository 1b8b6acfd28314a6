//! Managing runs from the pages with plain forms (no JS needed): `POST /runs/{id}/cancel`,
//! `/resume`, `/delete` and `/meta` answer 303 back to the page they came from, and
//! `GET /runs/{id}/delete` asks "Delete run X and its checkpoints?" first. Also owns deleting a run
//! together with its checkpoint folders (shared with `DELETE /api/runs/{id}`) and the HTML error
//! page of the dashboard's forms.
//!
//! A queued or running run is not deleted: the answer is 409, asking to cancel it first. Cancelling
//! is asynchronous (the worker stops between batches, then writes the run's status and may write a
//! checkpoint), so deleting at once would race with those writes and could leave a half-written
//! checkpoint folder or a status update for a run that no longer exists.

use std::fs;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::run::load_run;
use crate::store::{Run, RunStatus};
use crate::web::templates::{encode_query, ConfirmDeletePage, MessagePage};
use crate::web::{AppError, AppState, FieldError};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/resume", post(resume))
        .route("/runs/{id}/test", post(score_test))
        .route("/runs/{id}/delete", get(confirm_delete).post(delete))
        .route("/runs/{id}/meta", post(edit_meta))
}

/// Longest accepted values of the run's editable facts (the name limit is the config's).
const MAX_NAME_CHARS: usize = 100;
const MAX_TAG_CHARS: usize = 40;
const MAX_TAGS: usize = 20;
const MAX_NOTES_CHARS: usize = 10_000;

/// An HTML page for a failed form request, with the error's status. Internal details go to the
/// log, not to the browser.
pub(super) fn page_error(e: AppError) -> Response {
    error_page(e, "/".into(), "Back to the runs")
}

fn error_page(e: AppError, back_href: String, back_label: &str) -> Response {
    let status = e.status();
    let lines = match &e {
        _ if e.is_internal() => {
            tracing::error!(error = %e, "request failed");
            vec!["Something went wrong on the server; the details are in its log.".to_string()]
        }
        AppError::Invalid(fields) => fields
            .iter()
            .map(|f| {
                if f.field.is_empty() {
                    f.message.clone()
                } else {
                    format!("{}: {}", f.field, f.message)
                }
            })
            .collect(),
        other => vec![other.to_string()],
    };
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not possible now",
        StatusCode::BAD_REQUEST => "Bad request",
        StatusCode::UNPROCESSABLE_ENTITY => "Invalid input",
        StatusCode::INSUFFICIENT_STORAGE => "Disk full",
        _ => "Error",
    };
    let page = MessagePage {
        title: title.into(),
        lines,
        back_href,
        back_label: back_label.into(),
    };
    (status, page).into_response()
}

/// An error page that leads back to the run, unless the run is what was not found.
fn run_error(e: AppError, id: &str) -> Response {
    if e.status() == StatusCode::NOT_FOUND {
        page_error(e)
    } else {
        error_page(e, run_href(id), "Back to the run")
    }
}

fn run_href(id: &str) -> String {
    format!("/runs/{}", encode_query(id))
}

/// Where a form asks to go afterwards: `back=/` is the runs page, anything else the run page
/// (only these two, so the field cannot send the browser elsewhere).
#[derive(Debug, Default, Deserialize)]
struct BackForm {
    back: Option<String>,
}

fn back_to(id: &str, form: Result<Form<BackForm>, FormRejection>) -> String {
    match form {
        Ok(Form(BackForm { back: Some(back) })) if back == "/" => "/".into(),
        _ => run_href(id),
    }
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: Result<Form<BackForm>, FormRejection>,
) -> Response {
    let result = load_run(&state, &id).and_then(|_| state.jobs.cancel(&id).map_err(AppError::from));
    match result {
        Ok(()) => Redirect::to(&back_to(&id, form)).into_response(),
        Err(e) => run_error(e, &id),
    }
}

async fn resume(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: Result<Form<BackForm>, FormRejection>,
) -> Response {
    let result = load_run(&state, &id).and_then(|_| state.jobs.resume(&id).map_err(AppError::from));
    match result {
        Ok(()) => Redirect::to(&back_to(&id, form)).into_response(),
        Err(e) => run_error(e, &id),
    }
}

/// The run page's "Score on the test split" button: scores, then back to the run's test section.
async fn score_test(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let result = match load_run(&state, &id) {
        Ok(run) => state.predict.score_test(&run.id).await.map_err(AppError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to(&format!("{}#test", run_href(&id))).into_response(),
        Err(e) => run_error(e, &id),
    }
}

async fn confirm_delete(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let run = match load_run(&state, &id).and_then(|run| refuse_if_active(&state, &run).map(|_| run)) {
        Ok(run) => run,
        Err(e) => return run_error(e, &id),
    };
    let (remove, kept) = checkpoint_folders(&state.ckpt_dir, &run);
    ConfirmDeletePage {
        id: run.id,
        name: run.name,
        status: run.status.as_str(),
        folders: remove.iter().map(|p| p.display().to_string()).collect(),
        kept: kept.iter().map(|k| k.describe()).collect(),
    }
    .into_response()
}

async fn delete(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let shared = state.clone();
    let run_id = id.clone();
    let outcome = tokio::task::spawn_blocking(move || delete_run_with_checkpoints(&shared, &run_id))
        .await
        .unwrap_or_else(|e| Err(AppError::Internal(format!("deleting a run: {e}"))));
    match outcome {
        Ok(kept) if kept.is_empty() => Redirect::to("/").into_response(),
        Ok(kept) => {
            let mut lines = vec![format!("Run {id} was deleted.")];
            lines.extend(kept.iter().map(|k| k.describe()));
            MessagePage {
                title: "Run deleted".into(),
                lines,
                back_href: "/".into(),
                back_label: "Back to the runs".into(),
            }
            .into_response()
        }
        Err(e) => run_error(e, &id),
    }
}

#[derive(Debug, Default, Deserialize)]
struct MetaForm {
    name: Option<String>,
    tags: Option<String>,
    notes: Option<String>,
}

/// Renames, retags and annotates a run; a field left out of the form keeps its value.
async fn edit_meta(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: Result<Form<MetaForm>, FormRejection>,
) -> Response {
    let result = (|| {
        let run = load_run(&state, &id)?;
        let Form(form) = form.map_err(|rejection| AppError::BadRequest(rejection.body_text()))?;
        let (name, tags, notes) = checked_meta(&run, form).map_err(AppError::Invalid)?;
        state.store.update_meta(&id, &name, &tags, &notes)?;
        Ok(())
    })();
    match result {
        Ok(()) => Redirect::to(&run_href(&id)).into_response(),
        Err(e) => run_error(e, &id),
    }
}

/// The new name, tags and notes, or a message per field that cannot be used.
fn checked_meta(run: &Run, form: MetaForm) -> Result<(String, Vec<String>, String), Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = form
        .name
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|| run.name.clone());
    if name.is_empty() {
        errors.push(FieldError::new("name", "is empty; give the run a name"));
    } else if name.chars().count() > MAX_NAME_CHARS {
        errors.push(FieldError::new(
            "name",
            format!("is longer than {MAX_NAME_CHARS} characters; shorten it"),
        ));
    }
    let tags: Vec<String> = match form.tags {
        Some(text) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        None => run.tags.clone(),
    };
    if let Some(long) = tags.iter().find(|t| t.chars().count() > MAX_TAG_CHARS) {
        errors.push(FieldError::new(
            "tags",
            format!("tag '{long}' is longer than {MAX_TAG_CHARS} characters"),
        ));
    }
    if tags.len() > MAX_TAGS {
        errors.push(FieldError::new(
            "tags",
            format!("{} tags given; use at most {MAX_TAGS}", tags.len()),
        ));
    }
    let notes = form
        .notes
        .map(|n| n.trim_end().to_string())
        .unwrap_or_else(|| run.notes.clone());
    if notes.chars().count() > MAX_NOTES_CHARS {
        errors.push(FieldError::new(
            "notes",
            format!("are longer than {MAX_NOTES_CHARS} characters; shorten them"),
        ));
    }
    if errors.is_empty() {
        Ok((name, tags, notes))
    } else {
        Err(errors)
    }
}

/// A queued or running run cannot be deleted (see the module docs for why).
fn refuse_if_active(state: &AppState, run: &Run) -> Result<(), AppError> {
    let queued = state.jobs.queue().contains(&run.id);
    if matches!(run.status, RunStatus::Queued | RunStatus::Running) || queued {
        let status = if queued && run.status.is_finished() {
            "still in the queue"
        } else {
            run.status.as_str()
        };
        return Err(AppError::Conflict(format!(
            "run '{}' is {status}; cancel it first, then delete it once it has stopped",
            run.id
        )));
    }
    Ok(())
}

/// A checkpoint folder that deleting the run leaves in place, and why.
pub(super) struct Kept {
    pub path: PathBuf,
    pub reason: &'static str,
}

impl Kept {
    fn describe(&self) -> String {
        format!(
            "The checkpoint folder {} was left in place: {}. Remove it yourself if it is no longer needed.",
            self.path.display(),
            self.reason
        )
    }
}

/// Deletes a run that is neither queued nor running, with its checkpoint folders. The folders go
/// first: if removing them fails, the run stays listed and the delete can be tried again.
/// Returns the folders it left in place.
pub(super) fn delete_run_with_checkpoints(state: &AppState, id: &str) -> Result<Vec<Kept>, AppError> {
    let run = load_run(state, id)?;
    refuse_if_active(state, &run)?;
    let (remove, kept) = checkpoint_folders(&state.ckpt_dir, &run);
    for dir in &remove {
        let removed = if dir.is_dir() {
            fs::remove_dir_all(dir)
        } else {
            fs::remove_file(dir)
        };
        match removed {
            Ok(()) => {}
            // Another delete of the same run got there first; the run row decides who answers 404.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(AppError::Internal(format!(
                    "removing checkpoints {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    for k in &kept {
        tracing::warn!(run = id, path = %k.path.display(), reason = k.reason, "checkpoint folder left in place");
    }
    state.store.delete_run(id)?;
    Ok(kept)
}

/// The run's checkpoint folders (`CKPT_DIR/ID` and the folder recorded with the run): those safe
/// to remove, which lie inside `ckpt_dir` once every link is resolved, and the rest. Never the
/// checkpoint folder itself, never through a link.
pub(super) fn checkpoint_folders(ckpt_dir: &FsPath, run: &Run) -> (Vec<PathBuf>, Vec<Kept>) {
    let mut candidates = vec![ckpt_dir.join(&run.id)];
    if let Some(recorded) = run.checkpoint_dir.as_deref().filter(|d| !d.trim().is_empty()) {
        candidates.push(PathBuf::from(recorded));
    }
    let root = fs::canonicalize(ckpt_dir).ok();
    let mut remove: Vec<PathBuf> = Vec::new();
    let mut kept: Vec<Kept> = Vec::new();
    for candidate in candidates {
        let Ok(meta) = fs::symlink_metadata(&candidate) else {
            continue; // nothing there
        };
        let verdict = if meta.file_type().is_symlink() {
            Err("it is a link, and links are not followed")
        } else {
            match (&root, fs::canonicalize(&candidate)) {
                (Some(root), Ok(real)) if real == *root => Err("it is the whole checkpoint folder"),
                (Some(root), Ok(real)) if real.starts_with(root) => Ok(real),
                _ => Err("it is outside the checkpoint folder"),
            }
        };
        match verdict {
            Ok(real) if !remove.contains(&real) => remove.push(real),
            Ok(_) => {}
            Err(reason) if !kept.iter().any(|k| k.path == candidate) => kept.push(Kept {
                path: candidate,
                reason,
            }),
            Err(_) => {}
        }
    }
    (remove, kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRun, Store};

    fn run_with(store: &Store, checkpoint_dir: Option<&str>) -> Run {
        let id = store
            .create_run(&NewRun {
                name: "r",
                config: &serde_json::json!({}),
                dataset: "demo",
                model: "simple-cnn",
                image_size: 64,
                epochs_planned: 1,
                tags: &[],
            })
            .unwrap();
        if let Some(dir) = checkpoint_dir {
            store.set_runtime_info(&id, "cpu", dir).unwrap();
        }
        store.run(&id).unwrap().unwrap()
    }

    #[test]
    fn only_folders_inside_the_checkpoint_folder_are_removable() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpts = tmp.path().join("ckpts");
        let outside = tmp.path().join("elsewhere");
        fs::create_dir_all(&outside).unwrap();
        let store = Store::open_in_memory().unwrap();

        let run = run_with(&store, Some(outside.to_str().unwrap()));
        fs::create_dir_all(ckpts.join(&run.id)).unwrap();
        let (remove, kept) = checkpoint_folders(&ckpts, &run);
        assert_eq!(remove, [fs::canonicalize(ckpts.join(&run.id)).unwrap()]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].path, outside);
        assert!(kept[0].reason.contains("outside"));

        let sneaky = run_with(&store, Some(ckpts.join("..").join("elsewhere").to_str().unwrap()));
        let (remove, kept) = checkpoint_folders(&ckpts, &sneaky);
        assert!(remove.is_empty(), "a path with .. that leaves the folder is refused");
        assert_eq!(kept.len(), 1);

        let root = run_with(&store, Some(ckpts.to_str().unwrap()));
        let (remove, kept) = checkpoint_folders(&ckpts, &root);
        assert!(remove.is_empty(), "never the whole checkpoint folder");
        assert!(kept[0].reason.contains("whole"));
    }

    #[cfg(unix)]
    #[test]
    fn links_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpts = tmp.path().join("ckpts");
        let outside = tmp.path().join("elsewhere");
        fs::create_dir_all(&ckpts).unwrap();
        fs::create_dir_all(&outside).unwrap();
        let store = Store::open_in_memory().unwrap();
        let run = run_with(&store, None);
        std::os::unix::fs::symlink(&outside, ckpts.join(&run.id)).unwrap();
        let (remove, kept) = checkpoint_folders(&ckpts, &run);
        assert!(remove.is_empty());
        assert!(kept[0].reason.contains("link"));
    }

    #[test]
    fn meta_is_checked_per_field() {
        let store = Store::open_in_memory().unwrap();
        let run = run_with(&store, None);
        let form = MetaForm {
            name: Some("  ".into()),
            tags: Some(format!("ok, {}", "x".repeat(41))),
            notes: None,
        };
        let errors = checked_meta(&run, form).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "tags"]);
        let form = MetaForm {
            name: Some(" renamed ".into()),
            tags: Some("a, b,,".into()),
            notes: Some("looks good\n".into()),
        };
        let (name, tags, notes) = checked_meta(&run, form).unwrap();
        assert_eq!(
            (name.as_str(), tags, notes.as_str()),
            ("renamed", vec!["a".to_string(), "b".to_string()], "looks good")
        );
    }
}
