//! `cxr8 eval`: metrics for predictions made by any model, joined with a label file by image id,
//! printed as an aligned table or as JSON.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use image::GrayImage;
use serde::ser::SerializeMap;
use serde::Serialize;

use crate::data::{self, labels, LabelTable, Task};
use crate::service::evaluation::{self, SplitChoice};
use crate::train::job::JobPaths;
use crate::train::metrics::{self, Evaluation, LabelMetrics, ThresholdSource};
use crate::train::predict::Inference;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub source: EvalSource,
    /// Label file to score against: NIH Data_Entry*.csv(.gz), Kaggle sample_labels.csv or a
    /// one-hot CSV. Rows are matched to predictions by image id. Not needed with --split.
    #[arg(long, value_name = "CSV", required_unless_present = "split")]
    pub labels: Option<PathBuf>,
    /// With --checkpoint: score the run's own split (its label file, seed and split options are
    /// stored with the checkpoint). Test and train use the thresholds tuned on validation.
    #[arg(long, value_enum, requires = "checkpoint", conflicts_with = "labels")]
    pub split: Option<SplitChoice>,
    /// With --split: also write the probabilities as CSV (`image`, then one column per label).
    #[arg(long, value_name = "CSV", requires = "split")]
    pub out: Option<PathBuf>,
    /// With --split: the data folder the run trained from (its caches and the demo set).
    #[arg(long, default_value = "data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// With --checkpoint: the folder holding the listed images (default: the label file's folder).
    #[arg(long, value_name = "DIR", requires = "checkpoint")]
    pub images: Option<PathBuf>,
    #[command(flatten)]
    pub model: super::predict::CheckpointArgs,
}

/// What to evaluate; exactly one of these.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct EvalSource {
    /// CSV of probabilities: first column the image id (`Image Index` or `id`), then one column
    /// per label named `<Label>` or `prob_<Label>` (spelling as in any label file).
    #[arg(long, value_name = "CSV")]
    pub predictions: Option<PathBuf>,
    /// Run a trained model (run id, run folder or epoch folder) on every listed image found.
    #[arg(long, value_name = "RUN_ID|PATH")]
    pub checkpoint: Option<String>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if let (Some(split), Some(spec)) = (args.split, &args.source.checkpoint) {
        return run_split(&args, spec, split);
    }
    let labels_path = args
        .labels
        .as_ref()
        .context("give --labels CSV (or --split with --checkpoint)")?;
    let mut table = LabelTable::load(labels_path).context("reading the label file")?;
    let predictions = match (&args.source.predictions, &args.source.checkpoint) {
        (Some(path), _) => {
            Predictions::load(path, &table).with_context(|| format!("reading predictions {}", path.display()))?
        }
        (None, Some(spec)) => {
            // Scored on what the model predicts: its run may have dropped some of the file's
            // labels (--min-label-count, --labels-include) or made "No Finding" one.
            let model = args.model.load(spec)?;
            let left_out = table
                .restrict_to(model.labels())
                .context("matching the label file to the model's labels")?;
            if !left_out.is_empty() {
                eprintln!(
                    "not scored: {} (the model was trained without them)",
                    left_out.join(", ")
                );
            }
            Predictions::from_model(&args, model.as_ref(), &table)?
        }
        (None, None) => anyhow::bail!("nothing to evaluate: pass --predictions CSV or --checkpoint RUN_ID"),
    };
    for column in &predictions.ignored_columns {
        tracing::warn!(column = %column, "predictions column is not a label of the label file; ignored");
    }
    let evaluation = metrics::evaluate(
        &table.labels,
        table.task,
        &predictions.probs,
        &predictions.targets,
        None,
    );
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &JsonReport::new(&evaluation))?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &evaluation, &table)?;
    }
    Ok(())
}

/// `--checkpoint RUN --split S`: the run's own split, scored and optionally written out.
fn run_split(args: &EvalArgs, spec: &str, split: SplitChoice) -> anyhow::Result<()> {
    let model = args.model.load(spec)?;
    let paths = JobPaths {
        data_dir: args.data_dir.clone(),
        ckpt_dir: args.model.ckpt_dir.clone(),
    };
    let predictions = evaluation::predict_split(model.as_ref(), &paths, split)
        .with_context(|| format!("predicting the run's {} split", split.name()))?;
    if predictions.images.is_empty() {
        anyhow::bail!("the run's {} split has no images", split.name());
    }
    if let Some(path) = &args.out {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        predictions
            .write_csv(std::io::BufWriter::new(file))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {} rows to {}", predictions.images.len(), path.display());
    }
    let evaluation = predictions.evaluate();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &JsonReport::new(&evaluation))?;
        writeln!(out)?;
    } else {
        let config = &model.state().config;
        let (labels_path, _) = crate::train::job::dataset_paths(config, &paths)?;
        let table = LabelTable::load(&labels_path).context("reading the run's label file")?;
        write_text(&mut out, &evaluation, &table)?;
    }
    Ok(())
}

/// Probabilities and 0/1 targets, row-major in the label table's label order.
struct Predictions {
    probs: Vec<f32>,
    targets: Vec<f32>,
    ignored_columns: Vec<String>,
}

/// How many unknown ids an error message shows.
const EXAMPLES: usize = 5;

/// Images decoded per model chunk, so a large label file never holds all pixels at once.
const CHUNK: usize = 256;

impl Predictions {
    /// Runs the model on every listed image found under `--images`; the table has the model's
    /// labels in its output order (`LabelTable::restrict_to`).
    fn from_model(args: &EvalArgs, model: &dyn Inference, table: &LabelTable) -> anyhow::Result<Self> {
        use rayon::prelude::*;
        let folder = match &args.images {
            Some(dir) => dir.clone(),
            None => args
                .labels
                .as_deref()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."))
                .to_path_buf(),
        };
        let index = data::images::ImageIndex::scan(&folder).context("listing the images")?;
        let found: Vec<(usize, &Path)> = table
            .records
            .iter()
            .enumerate()
            .filter_map(|(row, r)| index.get(&r.image).map(|p| (row, p)))
            .collect();
        if found.is_empty() {
            anyhow::bail!(
                "none of the {} listed images is in {}: pass --images with the image folder",
                table.len(),
                folder.display()
            );
        }
        if found.len() < table.len() {
            tracing::warn!(
                "{} of {} listed images not found; evaluating the rest",
                table.len() - found.len(),
                table.len()
            );
        }
        let size = model.image_size();
        let width = table.labels.len();
        let (mut probs, mut targets) = (Vec::new(), Vec::new());
        for chunk in found.chunks(CHUNK) {
            let pixels: Vec<GrayImage> = chunk
                .par_iter()
                .map(|(_, path)| data::images::load_resized(path, size))
                .collect::<Result<_, _>>()
                .context("reading an image")?;
            let refs: Vec<&[u8]> = pixels.iter().map(|p| p.as_raw().as_slice()).collect();
            let out = model.probabilities(&refs);
            let n_out = model.labels().len();
            for (i, &(row, _)) in chunk.iter().enumerate() {
                probs.extend_from_slice(&out[i * n_out..(i + 1) * n_out]);
                targets.extend((0..width).map(|l| if table.records[row].has(l) { 1.0 } else { 0.0 }));
            }
        }
        Ok(Predictions {
            probs,
            targets,
            ignored_columns: Vec::new(),
        })
    }

    fn load(path: &Path, table: &LabelTable) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| data::Error::io(path, e))?;
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut text = Vec::new();
            flate2::read::MultiGzDecoder::new(&bytes[..])
                .read_to_end(&mut text)
                .map_err(|e| data::Error::io(path, e))?;
            text
        } else {
            bytes
        };
        Self::parse(path, &text, table)
    }

    fn parse(path: &Path, text: &[u8], table: &LabelTable) -> anyhow::Result<Self> {
        let at = |line: Option<u64>, column: Option<&str>, message: String| data::Error::Csv {
            path: path.into(),
            line,
            column: column.map(str::to_string),
            message,
        };
        let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(text);
        let mut records = reader.records();
        let header = match records.next() {
            Some(Ok(header)) => header,
            Some(Err(e)) => return Err(at(Some(1), None, format!("malformed CSV: {e}")).into()),
            None => {
                return Err(at(
                    None,
                    None,
                    "the file is empty: expected a header 'Image Index,<Label>,...'".into(),
                )
                .into())
            }
        };
        let names: Vec<String> = header
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
            .collect();
        if !names
            .first()
            .is_some_and(|first| first.eq_ignore_ascii_case("Image Index") || first.eq_ignore_ascii_case("id"))
        {
            return Err(at(
                Some(1),
                names.first().map(String::as_str),
                "the first column must be the image id, named 'Image Index' or 'id'".into(),
            )
            .into());
        }

        let mut by_label: HashMap<&'static str, usize> = HashMap::new();
        for (column, name) in names.iter().enumerate().skip(1) {
            let bare = strip_prefix_ignore_case(name, "prob_").unwrap_or(name);
            if let Some(label) = labels::canonical(bare) {
                if let Some(&other) = by_label.get(label) {
                    return Err(at(
                        Some(1),
                        Some(name),
                        format!(
                            "label '{label}' appears twice (columns '{}' and '{name}')",
                            names[other]
                        ),
                    )
                    .into());
                }
                by_label.insert(label, column);
            }
        }
        let mut columns = Vec::with_capacity(table.labels.len());
        let mut missing = Vec::new();
        for label in &table.labels {
            match labels::canonical(label).and_then(|c| by_label.get(c)) {
                Some(&column) => columns.push(column),
                None => missing.push(label.as_str()),
            }
        }
        if !missing.is_empty() {
            return Err(at(
                Some(1),
                None,
                format!(
                    "no probability column for {} of the label file's labels: {} (name columns '<Label>' or \
                     'prob_<Label>'; the file has: {})",
                    missing.len(),
                    missing.join(", "),
                    names[1..].join(", ")
                ),
            )
            .into());
        }
        // Non-label columns and labels this label file does not have, in file order.
        let ignored_columns = (1..names.len())
            .filter(|column| !columns.contains(column))
            .map(|column| names[column].clone())
            .collect();

        let index = table.index_by_image();
        let width = table.labels.len();
        let mut probs = Vec::new();
        let mut targets = Vec::new();
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut unknown: Vec<String> = Vec::new();
        let mut unknown_count = 0usize;
        for record in records {
            let record = record.map_err(|e| {
                at(
                    e.position().map(|p| p.line()),
                    None,
                    format!("malformed CSV: {e} (every row needs as many fields as the header)"),
                )
            })?;
            let line = record.position().map(|p| p.line());
            let id = record[0].trim();
            if let Some(first) = seen.insert(id.to_string(), line.unwrap_or(0)) {
                return Err(at(line, None, format!("duplicate image id '{id}' (first on line {first})")).into());
            }
            let Some(&row) = index.get(id) else {
                unknown_count += 1;
                if unknown.len() < EXAMPLES {
                    unknown.push(id.to_string());
                }
                continue;
            };
            for &column in &columns {
                let value = record[column].trim();
                let prob: f32 = value.parse().map_err(|_| {
                    at(
                        line,
                        Some(&names[column]),
                        format!("'{value}' is not a number (expected a probability in [0, 1])"),
                    )
                })?;
                if !(0.0..=1.0).contains(&prob) {
                    return Err(at(
                        line,
                        Some(&names[column]),
                        format!("{value} is not a probability in [0, 1] (apply sigmoid/softmax to logits first)"),
                    )
                    .into());
                }
                probs.push(prob);
            }
            targets.extend((0..width).map(|label| if table.records[row].has(label) { 1.0 } else { 0.0 }));
        }
        if unknown_count > 0 {
            anyhow::bail!(
                "{unknown_count} image id(s) in the predictions are not in the label file {} (e.g. {}): \
                 predictions must use the same ids as the label file's '{}' column",
                table.source.display(),
                unknown.join(", "),
                if table.format == data::LabelFormat::OneHot {
                    "id"
                } else {
                    "Image Index"
                }
            );
        }
        if seen.is_empty() {
            return Err(at(None, None, "the file has a header but no rows".into()).into());
        }
        Ok(Predictions {
            probs,
            targets,
            ignored_columns,
        })
    }
}

fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &name[prefix.len()..])
}

/// The `--json` shape: `labels` keyed by name in model order, then the summary.
#[derive(Serialize)]
struct JsonReport<'a> {
    labels: LabelsByName<'a>,
    mean_auroc: Option<f64>,
    map: Option<f64>,
    rows: usize,
    task: Task,
    auroc_defined: usize,
    ap_defined: usize,
    macro_f1: Option<f64>,
    macro_f1_tuned: Option<f64>,
    thresholds: ThresholdSource,
    accuracy_per_label: Option<f64>,
    subset_accuracy: Option<f64>,
    top1_accuracy: Option<f64>,
    top1_rows: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    confusion: Option<&'a Vec<Vec<u64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    balanced_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    macro_auroc: Option<f64>,
}

impl<'a> JsonReport<'a> {
    fn new(e: &'a Evaluation) -> Self {
        JsonReport {
            labels: LabelsByName(&e.per_label),
            mean_auroc: e.mean_auroc,
            map: e.map,
            rows: e.rows,
            task: e.task,
            auroc_defined: e.auroc_defined,
            ap_defined: e.ap_defined,
            macro_f1: e.macro_f1,
            macro_f1_tuned: e.macro_f1_tuned,
            thresholds: e.thresholds,
            accuracy_per_label: e.accuracy_per_label,
            subset_accuracy: e.subset_accuracy,
            top1_accuracy: e.top1_accuracy,
            top1_rows: e.top1_rows,
            confusion: e.confusion.as_ref(),
            balanced_accuracy: e.balanced_accuracy,
            macro_auroc: e.macro_auroc,
        }
    }
}

struct LabelsByName<'a>(&'a [LabelMetrics]);

#[derive(Serialize)]
struct LabelJson {
    auroc: Option<f64>,
    ap: Option<f64>,
    f1: Option<f64>,
    tp: u64,
    fp: u64,
    #[serde(rename = "fn")]
    fn_: u64,
    tn: u64,
    support: u64,
    f1_tuned: Option<f64>,
    threshold: f32,
}

impl Serialize for LabelsByName<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for m in self.0 {
            let entry = LabelJson {
                auroc: m.auroc,
                ap: m.ap,
                f1: m.f1,
                tp: m.tp,
                fp: m.fp,
                fn_: m.fn_,
                tn: m.tn,
                support: m.support,
                f1_tuned: m.f1_tuned,
                threshold: m.threshold,
            };
            map.serialize_entry(&m.label, &entry)?;
        }
        map.end()
    }
}

fn fixed(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

fn write_text(out: &mut impl Write, e: &Evaluation, table: &LabelTable) -> std::io::Result<()> {
    let width = e
        .per_label
        .iter()
        .map(|m| m.label.len())
        .max()
        .unwrap_or(0)
        .max("Label".len());
    writeln!(
        out,
        "{:<width$}  {:>7}  {:>6}  {:>6}  {:>6}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}  {:>9}",
        "Label", "support", "AUROC", "AP", "F1@0.5", "TP", "FP", "FN", "TN", "best F1", "threshold"
    )?;
    for m in &e.per_label {
        writeln!(
            out,
            "{:<width$}  {:>7}  {:>6}  {:>6}  {:>6}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}  {:>9.4}",
            m.label,
            m.support,
            fixed(m.auroc),
            fixed(m.ap),
            fixed(m.f1),
            m.tp,
            m.fp,
            m.fn_,
            m.tn,
            fixed(m.f1_tuned),
            m.threshold
        )?;
    }
    let labels = e.per_label.len();
    let undefined: Vec<&str> = e
        .per_label
        .iter()
        .filter(|m| m.auroc.is_none())
        .map(|m| m.label.as_str())
        .collect();
    writeln!(out)?;
    writeln!(
        out,
        "images evaluated: {} of {} in {}",
        e.rows,
        table.len(),
        table.source.display()
    )?;
    write!(
        out,
        "mean AUROC: {} over {} of {labels} labels",
        fixed(e.mean_auroc),
        e.auroc_defined
    )?;
    if undefined.is_empty() {
        writeln!(out)?;
    } else {
        writeln!(
            out,
            " (undefined without positives or negatives: {})",
            undefined.join(", ")
        )?;
    }
    writeln!(out, "mAP: {} over {} of {labels} labels", fixed(e.map), e.ap_defined)?;
    writeln!(
        out,
        "macro F1 at 0.5: {} over {} labels",
        fixed(e.macro_f1),
        e.f1_defined
    )?;
    writeln!(out, "macro best F1: {}", fixed(e.macro_f1_tuned))?;
    writeln!(
        out,
        "accuracy per label (all cells, at 0.5): {}",
        fixed(e.accuracy_per_label)
    )?;
    writeln!(
        out,
        "subset accuracy (whole row exact, at 0.5): {}",
        fixed(e.subset_accuracy)
    )?;
    writeln!(
        out,
        "top-1 accuracy (highest output is a positive label): {} over {} images with a label",
        fixed(e.top1_accuracy),
        e.top1_rows
    )?;
    if e.task == Task::SingleLabel {
        writeln!(out, "balanced accuracy: {}", fixed(e.balanced_accuracy))?;
        writeln!(out, "macro AUROC (one-vs-rest): {}", fixed(e.macro_auroc))?;
        if let Some(confusion) = &e.confusion {
            writeln!(out, "\nconfusion matrix (rows: true, columns: predicted)")?;
            let cell = confusion
                .iter()
                .flatten()
                .max()
                .map_or(1, |m| m.to_string().len())
                .max(5);
            write!(out, "{:<width$}", "")?;
            for column in 0..labels {
                write!(out, "  {:>cell$}", format!("#{column}"))?;
            }
            writeln!(out)?;
            for (m, row) in e.per_label.iter().zip(confusion) {
                write!(out, "{:<width$}", m.label)?;
                for count in row {
                    write!(out, "  {count:>cell$}")?;
                }
                writeln!(out)?;
            }
        }
    }
    if e.thresholds == ThresholdSource::TunedHere {
        writeln!(
            out,
            "\nbest F1 uses thresholds tuned on these same predictions: optimistic."
        )?;
    }
    if e.non_finite_outputs > 0 {
        writeln!(out, "warning: {} outputs are NaN or infinite", e.non_finite_outputs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> LabelTable {
        LabelTable::from_text(
            "labels.csv",
            "id,subject_id,Hernia,Pleural_Thickening\na,1,1,0\nb,2,0,1\nc,3,0,0\n".to_string(),
        )
        .unwrap()
    }

    fn parse(text: &str) -> anyhow::Result<Predictions> {
        Predictions::parse(Path::new("preds.csv"), text.as_bytes(), &table())
    }

    #[test]
    fn columns_matched_by_canonical_name_in_label_order() {
        let p = parse("Image Index,prob_pleural thickening,HERNIA,extra\nb,0.9,0.1,x\na,0.2,0.8,y\n").unwrap();
        assert_eq!(
            table().labels,
            ["Pleural_Thickening", "Hernia"],
            "the table's canonical order"
        );
        assert_eq!(
            p.probs,
            [0.9, 0.1, 0.2, 0.8],
            "columns follow the table, rows the predictions"
        );
        assert_eq!(p.targets, [1., 0., 0., 1.]);
        assert_eq!(p.ignored_columns, ["extra"]);
    }

    #[test]
    fn bad_predictions_say_what_and_where() {
        let cases = [
            ("", "empty"),
            ("image,Hernia\n", "first column must be the image id"),
            (
                "id,Hernia\na,0.5\n",
                "no probability column for 1 of the label file's labels: Pleural_Thickening",
            ),
            (
                "id,Hernia,Pleural_Thickening\na,0.5,abc\n",
                "line 2, column 'Pleural_Thickening': 'abc' is not a number",
            ),
            (
                "id,Hernia,Pleural_Thickening\na,0.5,0.1\nb,1.5,0\n",
                "line 3, column 'Hernia': 1.5 is not a probability",
            ),
            ("id,Hernia,Pleural_Thickening\na,NaN,0.1\n", "NaN is not a probability"),
            (
                "id,Hernia,Pleural_Thickening\na,0.5,0.1\na,0.5,0.1\n",
                "line 3: duplicate image id 'a'",
            ),
            (
                "id,Hernia,Pleural_Thickening\nx,0.5,0.1\ny,0,0\na,0,0\n",
                "2 image id(s) in the predictions are not in the label file labels.csv (e.g. x, y)",
            ),
            ("id,Hernia,Pleural_Thickening\n", "no rows"),
            ("id,Hernia,Pleural_Thickening\na,0.5\n", "line 2"),
            (
                "id,Hernia,prob_hernia,Pleural_Thickening\n",
                "label 'Hernia' appears twice",
            ),
        ];
        for (text, expected) in cases {
            let message = format!("{:#}", parse(text).err().unwrap_or_else(|| panic!("accepted {text:?}")));
            assert!(message.contains(expected), "for {text:?}: {message}");
        }
    }
}
