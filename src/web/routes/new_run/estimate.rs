//! A run's estimated duration on the new-run form and at `GET /api/estimate?...` (the form's
//! field names as query parameters; fields left out take the API's defaults), and the line the
//! run page shows against the live ETA.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::Value;

use super::fields::{config_values, parse, Kind, Spec};
use crate::service::estimate::{Basis, Estimate};
use crate::train::TrainConfig;
use crate::web::metrics::format_duration;
use crate::web::{AppError, AppState};

/// The estimate as the form states it: the headline and what it includes.
pub(crate) fn estimate_lines(estimate: &Estimate) -> (String, String) {
    let Some(total) = estimate.total_seconds else {
        let headline = match estimate.basis {
            Basis::Unavailable => "No estimate for this configuration.",
            _ => "No estimate yet.",
        };
        return (headline.to_string(), capitalised(&estimate.note));
    };
    let mut pieces = Vec::new();
    if let Some(parts) = &estimate.parts {
        for (name, seconds) in [
            ("image cache", parts.data_cache),
            ("training", parts.training),
            ("validation", parts.validation),
            ("test", parts.test),
        ] {
            if seconds > 0.0 {
                pieces.push(format!("{name} {}", format_duration(seconds)));
            }
        }
    }
    let when = match (estimate.basis, &estimate.measured_at) {
        (Basis::Measured, _) => "timed just now".to_string(),
        (_, Some(at)) => format!("timed {at}"),
        _ => String::new(),
    };
    let headline = format!(
        "Estimated duration: {} on {} ({}; {when}).",
        format_duration(total),
        estimate.device,
        pieces.join(", ")
    );
    (headline, estimate.note.clone())
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The config a query describes: the API's defaults, with each given parameter (a form field's
/// name) in place of its default. Unknown names and unreadable values are 400s naming them.
fn query_config(specs: &[Spec], query: Vec<(String, String)>) -> Result<Value, AppError> {
    let mut values = config_values(specs, &TrainConfig::default());
    for (key, value) in query {
        let Some(spec) = specs.iter().find(|s| s.name == key) else {
            let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
            return Err(AppError::BadRequest(format!(
                "unknown parameter '{key}'; use the new-run form's field names: {}",
                known.join(", ")
            )));
        };
        let value = match spec.kind {
            // As the form shows flags: "true" when on, empty when off.
            Kind::Flag => match value.as_str() {
                "true" | "on" | "1" => "true".to_string(),
                "false" | "off" | "0" | "" => String::new(),
                other => return Err(AppError::BadRequest(format!("{key}: '{other}' is not true or false"))),
            },
            _ => value,
        };
        values.insert(spec.name.to_string(), value);
    }
    let (config, errors) = parse(specs, &values);
    if !errors.is_empty() {
        let messages: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        return Err(AppError::BadRequest(messages.join("; ")));
    }
    Ok(Value::Object(config))
}

/// `GET /api/estimate?model=…&image_size=…&batch_size=…&epochs=…&dataset=…`: the estimate,
/// timing the configuration's step first when this machine has not yet (a few seconds).
pub(super) async fn estimate_api(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<impl IntoResponse, AppError> {
    let names = super::dataset_names(&state)?;
    let specs: Vec<Spec> = super::fields::groups(&names).into_iter().flat_map(|(_, s)| s).collect();
    let config = query_config(&specs, query)?;
    let estimates = state.estimates.clone();
    let estimate = tokio::task::spawn_blocking(move || estimates.estimate_posted(&config, true))
        .await
        .map_err(|e| AppError::Internal(format!("estimating a run: {e}")))?
        .map_err(|errors| {
            let messages: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
            AppError::BadRequest(messages.join("; "))
        })?;
    let (headline, note) = estimate_lines(&estimate);
    let mut body = serde_json::to_value(&estimate).expect("estimates serialise");
    body["headline"] = Value::String(headline);
    body["summary"] = Value::String(note);
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)))
}

/// The form's estimate shown before any JavaScript runs: a cached figure, never a measurement
/// (the page must open at once; the script asks for a measured one).
pub(super) async fn cached_lines(
    state: &Arc<AppState>,
    values: HashMap<String, String>,
    specs: Vec<Spec>,
) -> (String, String) {
    let (config, errors) = parse(&specs, &values);
    if !errors.is_empty() {
        return (String::new(), String::new());
    }
    let estimates = state.estimates.clone();
    let config = Value::Object(config);
    match tokio::task::spawn_blocking(move || estimates.estimate_posted(&config, false)).await {
        // Not timed yet: the page says when it will be.
        Ok(Ok(estimate)) if estimate.basis == Basis::Deferred => (String::new(), String::new()),
        Ok(Ok(estimate)) => estimate_lines(&estimate),
        _ => (String::new(), String::new()),
    }
}

/// The run page's line for an estimate stored with a run (JSON as the service wrote it): empty
/// when there is none.
pub(crate) fn stored_estimate_line(stored: Option<&Value>) -> (String, Option<f64>) {
    let Some(estimate) = stored.and_then(|v| serde_json::from_value::<Estimate>(v.clone()).ok()) else {
        return (String::new(), None);
    };
    match estimate.total_seconds {
        Some(total) => (
            format!(
                "estimated {} before start ({})",
                format_duration(total),
                estimate.device
            ),
            Some(total),
        ),
        None => (String::new(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::estimate::{Parts, SplitImages, StepCost};

    fn estimate(total: Option<f64>) -> Estimate {
        Estimate {
            basis: Basis::Cached,
            total_seconds: total,
            parts: total.map(|_| Parts {
                data_cache: 0.0,
                training: 180.0,
                validation: 15.0,
                test: 5.0,
            }),
            needs_confirmation: false,
            images: Some(SplitImages {
                train: 1,
                val: 1,
                test: 1,
                to_cache: 0,
                source_pixels: 1.0,
            }),
            epochs: 8,
            step: Some(StepCost {
                batch: 8,
                train_ms_per_step: 1.0,
                infer_ms_per_batch: 1.0,
                timed_steps: 3,
                timed_batches: 3,
            }),
            device: "CPU: test (2 threads)".into(),
            measured_at: Some("2026-12-07T00:00:00.000Z".into()),
            note: "a note".into(),
        }
    }

    #[test]
    fn the_headline_names_total_parts_device_and_when() {
        let (headline, note) = estimate_lines(&estimate(Some(200.0)));
        assert_eq!(
            headline,
            "Estimated duration: 3m 20s on CPU: test (2 threads) (training 3m 00s, validation 15s, test 5s; \
             timed 2026-12-07T00:00:00.000Z)."
        );
        assert_eq!(note, "a note");
        let (headline, _) = estimate_lines(&estimate(None));
        assert_eq!(headline, "No estimate yet.");
    }

    #[test]
    fn a_stored_estimate_becomes_the_run_pages_line() {
        let stored = serde_json::to_value(estimate(Some(240.0))).unwrap();
        let (line, total) = stored_estimate_line(Some(&stored));
        assert_eq!(line, "estimated 4m 00s before start (CPU: test (2 threads))");
        assert_eq!(total, Some(240.0));
        assert_eq!(stored_estimate_line(None), (String::new(), None));
        assert_eq!(stored_estimate_line(Some(&Value::String("junk".into()))).0, "");
    }

    fn specs() -> Vec<Spec> {
        super::super::fields::groups(&[])
            .into_iter()
            .flat_map(|(_, s)| s)
            .collect()
    }

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_query_overrides_the_api_defaults_by_field_name() {
        let config = query_config(
            &specs(),
            pairs(&[("model", "simple-cnn"), ("image_size", "64"), ("pos_weight", "false")]),
        )
        .unwrap();
        assert_eq!(config["model"], "simple-cnn");
        assert_eq!(config["image_size"], 64);
        assert_eq!(config["pos_weight"], false);
        assert_eq!(
            config["epochs"],
            TrainConfig::default().epochs,
            "left out: the API's default"
        );
    }

    #[test]
    fn unknown_names_and_bad_values_are_named() {
        let message = query_config(&specs(), pairs(&[("modle", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("unknown parameter 'modle'") && message.contains("image_size"),
            "{message}"
        );
        let message = query_config(&specs(), pairs(&[("image_size", "big")]))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("image_size") && message.contains("'big' is not a whole number"),
            "{message}"
        );
        let message = query_config(&specs(), pairs(&[("pos_weight", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("not true or false"), "{message}");
    }
}
