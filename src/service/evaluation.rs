//! A checkpoint's predictions on its own run's train, validation or test split — the images the
//! run itself used, found from the config stored with the checkpoint (label file, seed, split
//! options), so nobody has to pass them again. `cxr8 eval --split` and the predictions CSV of the
//! API both read them; the CSV lets anyone recompute every number with scikit-learn.

use std::io::Write;

use serde::Deserialize;

use super::Result;
use crate::data::Task;
use crate::train::job::{self, JobPaths};
use crate::train::metrics;
use crate::train::predict::Inference;

/// Which of the run's splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SplitChoice {
    Train,
    Val,
    Test,
}

impl SplitChoice {
    pub fn name(self) -> &'static str {
        match self {
            SplitChoice::Train => "train",
            SplitChoice::Val => "val",
            SplitChoice::Test => "test",
        }
    }
}

/// Probabilities of every image of one split, row-major in the model's label order.
#[derive(Debug, Clone)]
pub struct SplitPredictions {
    pub split: SplitChoice,
    pub labels: Vec<String>,
    pub task: Task,
    /// Image file names, one per row.
    pub images: Vec<String>,
    pub probs: Vec<f32>,
    /// 0/1 targets, `images.len() × labels.len()`.
    pub targets: Vec<f32>,
    /// The validation-tuned thresholds the checkpoint carries.
    pub thresholds: Vec<f32>,
}

/// Runs `model` on its run's `split` (the cache is built first when it is missing). Blocking.
pub fn predict_split(model: &dyn Inference, paths: &JobPaths, split: SplitChoice) -> Result<SplitPredictions> {
    let config = &model.state().config;
    let data = job::prepare_data(config, paths, None)?;
    let rows = match split {
        SplitChoice::Train => &data.train,
        SplitChoice::Val => &data.val,
        SplitChoice::Test => &data.test,
    };
    let pixels: Vec<&[u8]> = rows.0.iter().map(|&i| data.cache.image(i)).collect();
    Ok(SplitPredictions {
        split,
        labels: data.labels.clone(),
        task: data.task,
        images: rows.0.iter().map(|&i| data.cache.ids()[i].clone()).collect(),
        probs: model.probabilities(&pixels),
        targets: metrics::targets_from_bits(&rows.1, data.labels.len()),
        thresholds: model.thresholds().to_vec(),
    })
}

impl SplitPredictions {
    /// `image,<label 1>,<label 2>,…` then one row per image, probabilities with 9 significant
    /// digits (an f32 read back exactly).
    pub fn write_csv(&self, out: impl Write) -> std::io::Result<()> {
        let mut writer = csv::Writer::from_writer(out);
        let header = std::iter::once("image").chain(self.labels.iter().map(String::as_str));
        writer.write_record(header)?;
        for (image, row) in self
            .images
            .iter()
            .zip(self.probs.chunks_exact(self.labels.len().max(1)))
        {
            let cells = std::iter::once(image.clone()).chain(row.iter().map(|p| format!("{p:.9e}")));
            writer.write_record(cells)?;
        }
        writer.flush()
    }

    /// Every metric of the split. Validation tunes its own thresholds (as training reported it);
    /// train and test take the checkpoint's validation thresholds unchanged.
    pub fn evaluate(&self) -> metrics::Evaluation {
        let given = (self.split != SplitChoice::Val).then_some(self.thresholds.as_slice());
        metrics::evaluate(&self.labels, self.task, &self.probs, &self.targets, given)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_has_an_image_column_then_one_per_label_and_reads_back_exactly() {
        let predictions = SplitPredictions {
            split: SplitChoice::Test,
            labels: vec!["Effusion".into(), "Mass, left".into()],
            task: Task::MultiLabel,
            images: vec!["a.png".into(), "b.png".into()],
            probs: vec![0.1, 0.333_333_34, 0.999_999_9, 1e-7],
            targets: vec![0.0, 1.0, 1.0, 0.0],
            thresholds: vec![0.5, 0.5],
        };
        let mut bytes = Vec::new();
        predictions.write_csv(&mut bytes).unwrap();
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
        assert_eq!(header, ["image", "Effusion", "Mass, left"]);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(&rows[1][0], "b.png");
        let read: Vec<f32> = rows
            .iter()
            .flat_map(|r| (1..3).map(|c| r[c].parse::<f32>().unwrap()).collect::<Vec<_>>())
            .collect();
        assert_eq!(read, predictions.probs, "probabilities survive the CSV bit for bit");
    }
}
