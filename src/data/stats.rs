//! Data set statistics for `cxr8 dataset stats`: counts per label, co-occurrence, labels per
//! image, images per patient, views, sex, age, and (optionally) which images are missing on disk.
//! [`Stats`] serialises to the stable JSON interface; the CLI renders the text tables.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::table::Sex;
use super::{Error, LabelFormat, LabelTable, Result, Task};

/// Ages above this are recording errors (the 2017 NIH file has ages such as 414); they are
/// counted and left out of the age summary.
pub const MAX_PLAUSIBLE_AGE: u16 = 120;

/// How many example names a report lists (missing images, implausible ages).
const EXAMPLES: usize = 10;

/// Everything `dataset stats` reports. Field names are the JSON keys and must stay stable.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub source: PathBuf,
    pub format: LabelFormat,
    pub task: Task,
    /// Rows (one per image).
    pub images: usize,
    /// Distinct patient ids.
    pub patients: usize,
    /// Images per label, including "No Finding".
    pub labels: BTreeMap<String, usize>,
    /// The same counts in model-output order (then "No Finding"), with share and patients.
    pub label_table: Vec<LabelStat>,
    pub cooccurrence: Cooccurrence,
    /// `labels_per_image[k]` = images with exactly `k` labels ("No Finding" counts as 0 when it
    /// is the absence of every label, as in NIH files).
    pub labels_per_image: Vec<usize>,
    pub images_per_patient: PerPatient,
    /// `PA`/`AP` counts; rows without a view count as `unknown`.
    pub views: BTreeMap<String, usize>,
    pub sex: SexCounts,
    /// `None` when the file has no ages (one-hot files).
    pub age: Option<AgeStats>,
    /// Filled by [`check_images`] when an image folder is given.
    pub missing_images: Option<MissingImages>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelStat {
    pub label: String,
    pub images: usize,
    /// Share of all images, in percent.
    pub percent: f64,
    /// Distinct patients with at least one image with this label.
    pub patients: usize,
}

/// `counts[i][j]` = images with both `labels[i]` and `labels[j]`; the diagonal is the label count.
#[derive(Debug, Clone, Serialize)]
pub struct Cooccurrence {
    pub labels: Vec<String>,
    pub counts: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PerPatient {
    pub min: usize,
    pub median: f64,
    pub mean: f64,
    pub max: usize,
    pub histogram: Vec<Bucket>,
}

/// Patients whose image count lies in `from..=to` (`to` is `None` for the open last bucket).
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub from: usize,
    pub to: Option<usize>,
    pub patients: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SexCounts {
    pub male: usize,
    pub female: usize,
    pub unknown: usize,
}

/// Summary over plausible ages (0..=120 years); implausible ones are counted separately.
#[derive(Debug, Clone, Serialize)]
pub struct AgeStats {
    pub known: usize,
    pub missing: usize,
    pub min: u16,
    pub median: f64,
    pub mean: f64,
    pub max: u16,
    pub implausible: usize,
    /// Image names with an implausible age, up to 10.
    pub implausible_examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MissingImages {
    pub dir: PathBuf,
    /// Image files found in the folder (and NIH's `images_001…` subfolders).
    pub found_on_disk: usize,
    /// Label-file rows whose image is not on disk.
    pub missing: usize,
    /// Up to 10 of them.
    pub examples: Vec<String>,
}

/// Upper ends of the images-per-patient histogram buckets; the last bucket is open.
const PER_PATIENT_BUCKETS: [usize; 7] = [1, 2, 5, 10, 20, 50, 100];

/// Computes every statistic that needs only the label file.
pub fn compute(table: &LabelTable) -> Stats {
    let n = table.len();
    let label_names: Vec<String> = table.labels.clone();
    let implicit_none = table.no_finding_is_implicit();

    let mut patient_images: HashMap<&str, usize> = HashMap::new();
    for record in &table.records {
        *patient_images.entry(record.patient.as_str()).or_default() += 1;
    }

    // Patients per label; the implicit "No Finding" gets the extra last slot.
    let slots = label_names.len() + usize::from(implicit_none);
    let mut label_patients: Vec<HashSet<&str>> = vec![HashSet::new(); slots];
    let mut cooc = vec![vec![0usize; label_names.len()]; label_names.len()];
    let mut per_image = vec![0usize; label_names.len() + 1];
    for record in &table.records {
        let set: Vec<usize> = (0..label_names.len()).filter(|&i| record.has(i)).collect();
        per_image[set.len()] += 1;
        for &i in &set {
            label_patients[i].insert(&record.patient);
            for &j in &set {
                cooc[i][j] += 1;
            }
        }
        if implicit_none && set.is_empty() {
            label_patients[slots - 1].insert(&record.patient);
        }
    }
    // Trailing zeros say nothing ("no image has 14 labels").
    while per_image.len() > 1 && per_image.last() == Some(&0) {
        per_image.pop();
    }

    let counts = table.label_counts();
    let label_table = counts
        .iter()
        .enumerate()
        .map(|(i, (label, images))| LabelStat {
            label: label.clone(),
            images: *images,
            percent: percent(*images, n),
            patients: label_patients[i].len(),
        })
        .collect();

    let mut views = BTreeMap::new();
    let mut sex = SexCounts {
        male: 0,
        female: 0,
        unknown: 0,
    };
    for record in &table.records {
        let view = record.view.clone().unwrap_or_else(|| "unknown".into());
        *views.entry(view).or_insert(0) += 1;
        match record.sex {
            Some(Sex::M) => sex.male += 1,
            Some(Sex::F) => sex.female += 1,
            None => sex.unknown += 1,
        }
    }

    let per_patient: Vec<usize> = patient_images.values().copied().collect();
    Stats {
        source: table.source.clone(),
        format: table.format,
        task: table.task,
        images: n,
        patients: patient_images.len(),
        labels: counts.into_iter().collect(),
        label_table,
        cooccurrence: Cooccurrence {
            labels: label_names,
            counts: cooc,
        },
        labels_per_image: per_image,
        images_per_patient: per_patient_summary(per_patient),
        views,
        sex,
        age: age_stats(table),
        missing_images: None,
    }
}

/// Adds the on-disk check: which label-file images are not in `dir`.
pub fn check_images(stats: &mut Stats, table: &LabelTable, dir: &Path) -> Result<()> {
    let on_disk = images_on_disk(dir)?;
    let missing: Vec<&str> = table
        .records
        .iter()
        .map(|r| r.image.as_str())
        .filter(|name| !on_disk.contains(*name))
        .collect();
    stats.missing_images = Some(MissingImages {
        dir: dir.to_path_buf(),
        found_on_disk: on_disk.len(),
        missing: missing.len(),
        examples: missing.iter().take(EXAMPLES).map(|s| s.to_string()).collect(),
    });
    Ok(())
}

/// File names of the images in `dir`, looking also where NIH's archives put them:
/// `images/`, `images_001…images_012/` and `images_NNN/images/`.
// Stand-in until `data::images::ImageIndex` lands; only names matter here.
pub(crate) fn images_on_disk(dir: &Path) -> Result<HashSet<String>> {
    if !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "image folder {} does not exist or is not a folder: pass the folder that holds the PNGs \
             (or NIH's images_001 … images_012 folders)",
            dir.display()
        )));
    }
    let mut folders = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && (name == "images" || name.starts_with("images_")) {
            folders.push(entry.path());
            if entry.path().join("images").is_dir() {
                folders.push(entry.path().join("images"));
            }
        }
    }
    let mut names = HashSet::new();
    for folder in folders {
        for entry in std::fs::read_dir(&folder).map_err(|e| Error::io(&folder, e))? {
            let entry = entry.map_err(|e| Error::io(&folder, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let lower = name.to_ascii_lowercase();
            if (lower.ends_with(".png") || lower.ends_with(".jpg") || lower.ends_with(".jpeg"))
                && entry.file_type().map(|t| !t.is_dir()).unwrap_or(false)
            {
                names.insert(name);
            }
        }
    }
    Ok(names)
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn median_sorted(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn per_patient_summary(mut counts: Vec<usize>) -> PerPatient {
    counts.sort_unstable();
    let as_f64: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
    let mut histogram = Vec::new();
    let mut from = 1;
    for &to in &PER_PATIENT_BUCKETS {
        let patients = counts.iter().filter(|&&c| c >= from && c <= to).count();
        histogram.push(Bucket {
            from,
            to: Some(to),
            patients,
        });
        from = to + 1;
    }
    histogram.push(Bucket {
        from,
        to: None,
        patients: counts.iter().filter(|&&c| c >= from).count(),
    });
    PerPatient {
        min: counts.first().copied().unwrap_or(0),
        median: median_sorted(&as_f64),
        mean: as_f64.iter().sum::<f64>() / as_f64.len().max(1) as f64,
        max: counts.last().copied().unwrap_or(0),
        histogram,
    }
}

fn age_stats(table: &LabelTable) -> Option<AgeStats> {
    let mut ages = Vec::new();
    let mut implausible = Vec::new();
    let mut missing = 0;
    for record in &table.records {
        match record.age {
            None => missing += 1,
            Some(age) if age > MAX_PLAUSIBLE_AGE => implausible.push(record.image.as_str()),
            Some(age) => ages.push(age),
        }
    }
    if ages.is_empty() && implausible.is_empty() {
        return None;
    }
    ages.sort_unstable();
    let as_f64: Vec<f64> = ages.iter().map(|&a| f64::from(a)).collect();
    Some(AgeStats {
        known: ages.len() + implausible.len(),
        missing,
        min: ages.first().copied().unwrap_or(0),
        median: median_sorted(&as_f64),
        mean: as_f64.iter().sum::<f64>() / as_f64.len().max(1) as f64,
        max: ages.last().copied().unwrap_or(0),
        implausible: implausible.len(),
        implausible_examples: implausible.iter().take(EXAMPLES).map(|s| s.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::labels::NO_FINDING;

    const NIH: &str = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n\
00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143\n\
00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143\n\
00000001_002.png,Cardiomegaly|Effusion,2,1,58,M,AP,2500,2048,0.168,0.168\n\
00000002_000.png,No Finding,0,2,81,F,AP,2500,2048,0.171,0.171\n\
00000003_000.png,Hernia,0,3,414,F,PA,2582,2991,0.143,0.143\n";

    fn table() -> LabelTable {
        LabelTable::from_text("fixture.csv", NIH.to_string()).unwrap()
    }

    #[test]
    fn counts_patients_labels_and_cooccurrence() {
        let s = compute(&table());
        assert_eq!((s.images, s.patients), (5, 3));
        assert_eq!(s.labels["Cardiomegaly"], 3);
        assert_eq!(s.labels[NO_FINDING], 1);
        assert_eq!(s.labels["Pneumonia"], 0, "absent labels are listed with 0");
        let cardio = s.label_table.iter().find(|l| l.label == "Cardiomegaly").unwrap();
        assert_eq!((cardio.patients, cardio.percent), (1, 60.0));
        let at = |name: &str| s.cooccurrence.labels.iter().position(|l| l == name).unwrap();
        assert_eq!(s.cooccurrence.counts[at("Cardiomegaly")][at("Emphysema")], 1);
        assert_eq!(s.cooccurrence.counts[at("Emphysema")][at("Cardiomegaly")], 1);
        assert_eq!(s.cooccurrence.counts[at("Cardiomegaly")][at("Cardiomegaly")], 3);
        assert_eq!(s.cooccurrence.counts[at("Hernia")][at("Cardiomegaly")], 0);
        assert_eq!(s.labels_per_image, [1, 2, 2]);
    }

    #[test]
    fn patients_views_sex_and_ages() {
        let s = compute(&table());
        let p = &s.images_per_patient;
        assert_eq!((p.min, p.median, p.max), (1, 1.0, 3));
        assert!((p.mean - 5.0 / 3.0).abs() < 1e-9);
        assert_eq!(p.histogram[0].patients, 2, "two patients with one image");
        assert_eq!(
            (p.histogram[2].from, p.histogram[2].to, p.histogram[2].patients),
            (3, Some(5), 1)
        );
        assert_eq!(s.views["PA"], 3);
        assert_eq!(s.views["AP"], 2);
        assert_eq!((s.sex.male, s.sex.female, s.sex.unknown), (3, 2, 0));
        let age = s.age.unwrap();
        assert_eq!((age.min, age.max, age.median), (57, 81, 58.0));
        assert_eq!(age.implausible, 1);
        assert_eq!(age.implausible_examples, ["00000003_000.png"]);
    }

    #[test]
    fn json_has_the_stable_keys() {
        let json = serde_json::to_value(compute(&table())).unwrap();
        for key in [
            "images",
            "patients",
            "labels",
            "label_table",
            "cooccurrence",
            "labels_per_image",
            "images_per_patient",
            "views",
            "sex",
            "age",
            "task",
            "format",
        ] {
            assert!(json.get(key).is_some(), "missing key {key}");
        }
        assert_eq!(json["task"], "multi-label");
        assert_eq!(json["labels"]["No Finding"], 1);
    }

    #[test]
    fn finds_images_in_nih_subfolders_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00000001_000.png"), b"").unwrap();
        let nested = dir.path().join("images_002").join("images");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("00000001_001.png"), b"").unwrap();
        std::fs::create_dir_all(dir.path().join("images_001")).unwrap();
        std::fs::write(dir.path().join("images_001").join("00000002_000.png"), b"").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        let t = table();
        let mut s = compute(&t);
        check_images(&mut s, &t, dir.path()).unwrap();
        let m = s.missing_images.unwrap();
        assert_eq!(m.found_on_disk, 3);
        assert_eq!(m.missing, 2);
        assert_eq!(m.examples, ["00000001_002.png", "00000003_000.png"]);

        let err = check_images(&mut compute(&t), &t, &dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn one_hot_without_ages_or_views() {
        let text = "id,subject_id,Hernia,No Finding\na.png,1,1,0\nb.png,1,0,1\nc.png,2,0,1\n";
        let t = LabelTable::from_text("x.csv", text.to_string()).unwrap();
        let s = compute(&t);
        assert!(s.age.is_none());
        assert_eq!(s.views["unknown"], 3);
        assert_eq!(s.labels[NO_FINDING], 2);
        assert_eq!(s.labels_per_image, [0, 3], "explicit No Finding is a label");
    }
}
