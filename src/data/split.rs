//! Patient-disjoint train/validation/test splits for `cxr8 dataset split`.
//!
//! Every strategy keeps all images of a patient in one split: NIH has up to 184 images of one
//! patient, and letting them straddle train and test inflates test scores.
//!
//! - **patient** — patients are shuffled with the seed and assigned to splits so that each split
//!   gets its fraction of the images (`--val`, `--test`; defaults 0.1 and 0.2) *and* of every
//!   label: patients with rare labels are placed first, each into the split that is furthest
//!   below its share of that patient's rarest label, so rare labels (Hernia: 227 images) land in
//!   every split. Patients with only common labels or "No Finding" then fill the image quotas.
//! - **official** — NIH's own lists: `test_list.txt` is the test split and validation is split
//!   out of `train_val_list.txt` by patient (the same stratified assignment; `--val` stays a
//!   fraction of all images). The lists are read from the label file's folder unless a folder
//!   is given. It is an error if either list is missing, names an image the label file does
//!   not have, names an image twice, or if the lists share a patient (NIH's do not).
//!   Label-file images in neither list are left out and reported.
//! - **balanced** — the class-balanced subset of the school project done patient-safely:
//!   patients are first split as in *patient*, then within each split images are picked
//!   (seeded order) so that every label — "No Finding" included — has up to
//!   `round(N × fraction)` images there (train takes the rest of `N`), so at most `N` per label
//!   overall. Labels are filled rarest first. A multi-label image counts for every label it has,
//!   and an image is only taken if none of its labels is full yet, so no label ever exceeds its
//!   quota; no image is taken twice. A label with too few images gets all it can and the
//!   shortfall is reported.
//!
//! With an image folder, rows whose image is not on disk are dropped first (and counted), so a
//! partial download splits cleanly. The same seed and options always give the same split.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::labels::NO_FINDING;
use super::{Error, LabelTable, Result};

/// NIH's official list file names, as in the NIH download next to `Data_Entry_2017.csv`.
pub const TRAIN_VAL_LIST: &str = "train_val_list.txt";
pub const TEST_LIST: &str = "test_list.txt";

/// File names `write` produces in the output folder.
pub const SPLIT_FILES: [&str; 3] = ["train.csv", "val.csv", "test.csv"];

/// How many example names an error message lists.
const EXAMPLES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Seeded, label-stratified assignment of whole patients by fractions.
    #[default]
    Patient,
    /// NIH's train_val_list.txt / test_list.txt; validation split out of train_val by patient.
    Official,
    /// Up to N images per label (No Finding included), patient-disjoint.
    Balanced,
}

#[derive(Debug, Clone)]
pub struct SplitOptions {
    pub strategy: Strategy,
    /// Share of all images for validation, in `[0, 1)`.
    pub val_fraction: f64,
    /// Share of all images for test, in `[0, 1)`; not used by `official`.
    pub test_fraction: f64,
    /// Images per label for `balanced` (required there, must be > 0).
    pub per_class: Option<usize>,
    pub seed: u64,
    /// Folder with NIH's lists for `official`; the label file's folder when `None`.
    pub lists_dir: Option<PathBuf>,
    /// When set, rows whose image is not in this folder are left out.
    pub images_dir: Option<PathBuf>,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions {
            strategy: Strategy::Patient,
            val_fraction: 0.1,
            test_fraction: 0.2,
            per_class: None,
            seed: 42,
            lists_dir: None,
            images_dir: None,
        }
    }
}

/// Record indices (into `LabelTable::records`, ascending) of each split, plus what happened.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
    pub report: SplitReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    pub strategy: Strategy,
    pub seed: u64,
    /// train, val, test in that order.
    pub parts: Vec<PartSummary>,
    /// Rows left out because their image is not on disk (with an image folder).
    pub missing_on_disk: usize,
    /// Rows in neither official list.
    pub not_in_lists: usize,
    /// `balanced`: labels that got fewer than asked for.
    pub shortfalls: Vec<Shortfall>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartSummary {
    pub name: String,
    pub images: usize,
    pub patients: usize,
    /// Images per label in this split, in the table's label order then "No Finding".
    pub labels: Vec<(String, usize)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Shortfall {
    pub label: String,
    pub wanted: usize,
    pub got: usize,
}

/// A split given as three label files, used as given (NIH-CXR-LT ships its train / val / test
/// one-hot CSVs): one table of the three files' rows in that order, and which rows are which.
/// The files must share their labels (in any column order) and task.
#[derive(Debug)]
pub struct FileSplit {
    pub table: LabelTable,
    pub train: std::ops::Range<usize>,
    pub val: std::ops::Range<usize>,
    pub test: std::ops::Range<usize>,
}

/// Patients with images in two split files, which the files' results are then not disjoint over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedPatients {
    pub first: String,
    pub second: String,
    pub patients: usize,
}

impl std::fmt::Display for SharedPatients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} patients have images in both the {} and the {} file: results are not patient-disjoint \
             (the files are used as given)",
            self.patients, self.first, self.second
        )
    }
}

impl FileSplit {
    pub fn load(train: &Path, val: &Path, test: &Path) -> Result<FileSplit> {
        let mut table = LabelTable::load(train)?;
        let train = 0..table.len();
        let val = table.append(LabelTable::load(val)?)?;
        let test = table.append(LabelTable::load(test)?)?;
        Ok(FileSplit {
            table,
            train,
            val,
            test,
        })
    }

    /// Pairs of files that share patients (warned about, never fixed: the split is the files').
    pub fn shared_patients(&self) -> Vec<SharedPatients> {
        let patients = |rows: &std::ops::Range<usize>| -> HashSet<&str> {
            rows.clone().map(|r| self.table.records[r].patient.as_str()).collect()
        };
        let (train, val, test) = (patients(&self.train), patients(&self.val), patients(&self.test));
        [
            ("train", "val", &train, &val),
            ("train", "test", &train, &test),
            ("val", "test", &val, &test),
        ]
        .into_iter()
        .map(|(first, second, a, b)| SharedPatients {
            first: first.into(),
            second: second.into(),
            patients: a.intersection(b).count(),
        })
        .filter(|shared| shared.patients > 0)
        .collect()
    }
}

/// Splits the table's rows; see the module docs for the strategies.
pub fn split(table: &LabelTable, options: &SplitOptions) -> Result<Split> {
    validate(options)?;
    let mut candidates: Vec<usize> = (0..table.len()).collect();
    let mut missing_on_disk = 0;
    if let Some(dir) = &options.images_dir {
        let on_disk = super::stats::images_on_disk(dir)?;
        candidates.retain(|&i| on_disk.contains(&table.records[i].image));
        missing_on_disk = table.len() - candidates.len();
        if candidates.is_empty() {
            return Err(Error::Invalid(format!(
                "none of the {} images of {} is in {}: is that the right image folder?",
                table.len(),
                table.source.display(),
                dir.display()
            )));
        }
    }
    let keys = LabelKeys::new(table);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut not_in_lists = 0;
    let mut shortfalls = Vec::new();
    let [train, val, test] = match options.strategy {
        Strategy::Patient => {
            let fractions = [
                1.0 - options.val_fraction - options.test_fraction,
                options.val_fraction,
                options.test_fraction,
            ];
            let [a, b, c] = assign_patients(table, &keys, &candidates, &fractions, &mut rng)
                .try_into()
                .expect("three groups");
            [a, b, c]
        }
        Strategy::Official => {
            let (train_val, test, unlisted) = official_lists(table, options, &candidates)?;
            not_in_lists = unlisted;
            let val_share =
                options.val_fraction * (train_val.len() + test.len()) as f64 / train_val.len().max(1) as f64;
            if val_share >= 1.0 {
                return Err(Error::Invalid(format!(
                    "--val {} asks for more images than the official train_val list has ({}): use a smaller fraction",
                    options.val_fraction,
                    train_val.len()
                )));
            }
            let [train, val]: [Vec<usize>; 2] =
                assign_patients(table, &keys, &train_val, &[1.0 - val_share, val_share], &mut rng)
                    .try_into()
                    .expect("two groups");
            [train, val, test]
        }
        Strategy::Balanced => {
            let n = options.per_class.expect("validated");
            let fractions = [
                1.0 - options.val_fraction - options.test_fraction,
                options.val_fraction,
                options.test_fraction,
            ];
            let parts = assign_patients(table, &keys, &candidates, &fractions, &mut rng);
            let val_quota = (n as f64 * options.val_fraction).round() as usize;
            let test_quota = (n as f64 * options.test_fraction).round() as usize;
            let quotas = [n.saturating_sub(val_quota + test_quota), val_quota, test_quota];
            let chosen: Vec<Vec<usize>> = parts
                .iter()
                .zip(quotas)
                .map(|(rows, quota)| pick_balanced(&keys, rows, quota, &mut rng))
                .collect();
            let mut got = vec![0usize; keys.names.len()];
            for &row in chosen.iter().flatten() {
                for k in keys.of(row) {
                    got[k] += 1;
                }
            }
            for (k, name) in keys.names.iter().enumerate() {
                if got[k] < n {
                    shortfalls.push(Shortfall {
                        label: name.clone(),
                        wanted: n,
                        got: got[k],
                    });
                }
            }
            let [a, b, c] = chosen.try_into().expect("three groups");
            [a, b, c]
        }
    };
    let parts = [("train", &train), ("val", &val), ("test", &test)]
        .into_iter()
        .map(|(name, rows)| summarize(table, &keys, name, rows))
        .collect();
    Ok(Split {
        train,
        val,
        test,
        report: SplitReport {
            strategy: options.strategy,
            seed: options.seed,
            parts,
            missing_on_disk,
            not_in_lists,
            shortfalls,
        },
    })
}

/// Writes `train.csv`, `val.csv`, `test.csv` in the input's format and `split.json` (the report)
/// into `out_dir`; returns the paths written.
pub fn write(table: &LabelTable, split: &Split, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, rows) in SPLIT_FILES.iter().zip([&split.train, &split.val, &split.test]) {
        let path = out_dir.join(name);
        table.write_subset(&path, rows)?;
        written.push(path);
    }
    let report = out_dir.join("split.json");
    let json = serde_json::to_vec_pretty(&split.report).expect("report serialises");
    super::write_atomically(&report, &json)?;
    written.push(report);
    Ok(written)
}

fn validate(options: &SplitOptions) -> Result<()> {
    for (flag, value) in [("--val", options.val_fraction), ("--test", options.test_fraction)] {
        if !(0.0..1.0).contains(&value) {
            return Err(Error::Invalid(format!(
                "{flag} {value} is not a fraction in [0, 1): use e.g. {flag} 0.1"
            )));
        }
    }
    let held_out = options.val_fraction
        + if options.strategy == Strategy::Official {
            0.0
        } else {
            options.test_fraction
        };
    if held_out >= 1.0 {
        return Err(Error::Invalid(format!(
            "--val {} and --test {} leave nothing for training: their sum must be below 1",
            options.val_fraction, options.test_fraction
        )));
    }
    match (options.strategy, options.per_class) {
        (Strategy::Balanced, None) => Err(Error::Invalid(
            "the balanced strategy needs --per-class N (images per label, e.g. 40)".into(),
        )),
        (Strategy::Balanced, Some(0)) => Err(Error::Invalid(
            "--per-class 0 would select no images: use a positive number such as 40".into(),
        )),
        _ => Ok(()),
    }
}

/// Label slots for stratifying and balancing: the table's labels, plus "No Finding" when it is
/// the absence of every label (NIH files), so it is balanced and stratified like a label.
struct LabelKeys<'a> {
    table: &'a LabelTable,
    names: Vec<String>,
    implicit_none: bool,
}

impl<'a> LabelKeys<'a> {
    fn new(table: &'a LabelTable) -> Self {
        let implicit_none = table.no_finding_is_implicit();
        let mut names = table.labels.clone();
        if implicit_none {
            names.push(NO_FINDING.to_string());
        }
        LabelKeys {
            table,
            names,
            implicit_none,
        }
    }

    fn of(&self, row: usize) -> impl Iterator<Item = usize> + '_ {
        let record = &self.table.records[row];
        let none = (self.implicit_none && record.targets == 0).then_some(self.names.len() - 1);
        (0..self.table.labels.len()).filter(move |&i| record.has(i)).chain(none)
    }
}

/// Assigns whole patients among `candidates` to groups with the given image fractions,
/// stratified by label (see the module docs). Returns each group's rows, ascending.
fn assign_patients(
    table: &LabelTable,
    keys: &LabelKeys,
    candidates: &[usize],
    fractions: &[f64],
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<usize>> {
    // Patients in first-appearance order: deterministic, unlike HashMap iteration.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut patients: Vec<Vec<usize>> = Vec::new();
    for &row in candidates {
        let id = table.records[row].patient.as_str();
        let p = *index.entry(id).or_insert_with(|| {
            patients.push(Vec::new());
            patients.len() - 1
        });
        patients[p].push(row);
    }
    let slots = keys.names.len();
    let mut label_total = vec![0usize; slots];
    let mut patient_labels: Vec<Vec<usize>> = Vec::with_capacity(patients.len());
    for rows in &patients {
        let mut counts = vec![0usize; slots];
        for &row in rows {
            for k in keys.of(row) {
                counts[k] += 1;
            }
        }
        for (total, c) in label_total.iter_mut().zip(&counts) {
            *total += c;
        }
        patient_labels.push(counts);
    }
    let rarest = |p: usize| {
        (0..slots)
            .filter(|&k| patient_labels[p][k] > 0)
            .min_by_key(|&k| (label_total[k], k))
    };
    let mut order: Vec<usize> = (0..patients.len()).collect();
    order.shuffle(rng);
    // Stable sort keeps the shuffled order among patients with the same rarest label.
    order.sort_by_key(|&p| rarest(p).map(|k| label_total[k]).unwrap_or(usize::MAX));

    let total_images = candidates.len() as f64;
    let groups = fractions.len();
    let mut images = vec![0usize; groups];
    let mut labels = vec![vec![0usize; slots]; groups];
    let mut assigned: Vec<Vec<usize>> = vec![Vec::new(); groups];
    for p in order {
        let image_deficit = |g: usize| fractions[g] * total_images - images[g] as f64;
        let usable = |g: usize| fractions[g] > 0.0;
        let best = match rarest(p) {
            Some(k) => (0..groups).filter(|&g| usable(g)).max_by(|&a, &b| {
                let da = fractions[a] * label_total[k] as f64 - labels[a][k] as f64;
                let db = fractions[b] * label_total[k] as f64 - labels[b][k] as f64;
                da.total_cmp(&db)
                    .then(image_deficit(a).total_cmp(&image_deficit(b)))
                    .then(b.cmp(&a))
            }),
            None => (0..groups)
                .filter(|&g| usable(g))
                .max_by(|&a, &b| image_deficit(a).total_cmp(&image_deficit(b)).then(b.cmp(&a))),
        }
        .expect("training fraction is positive");
        images[best] += patients[p].len();
        for (l, c) in labels[best].iter_mut().zip(&patient_labels[p]) {
            *l += c;
        }
        assigned[best].extend_from_slice(&patients[p]);
    }
    for rows in &mut assigned {
        rows.sort_unstable();
    }
    assigned
}

/// Picks up to `quota` images per label from `rows`, rarest label first, never letting a label
/// exceed its quota through a multi-label image. Returns rows ascending.
fn pick_balanced(keys: &LabelKeys, rows: &[usize], quota: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let slots = keys.names.len();
    let mut available = vec![0usize; slots];
    for &row in rows {
        for k in keys.of(row) {
            available[k] += 1;
        }
    }
    let mut label_order: Vec<usize> = (0..slots).collect();
    label_order.sort_by_key(|&k| (available[k], k));
    let mut shuffled = rows.to_vec();
    shuffled.shuffle(rng);

    let mut taken = vec![0usize; slots];
    let mut chosen: HashSet<usize> = HashSet::new();
    for k in label_order {
        for &row in &shuffled {
            if taken[k] >= quota {
                break;
            }
            if chosen.contains(&row) || !keys.of(row).any(|l| l == k) {
                continue;
            }
            if keys.of(row).all(|l| taken[l] < quota) {
                for l in keys.of(row) {
                    taken[l] += 1;
                }
                chosen.insert(row);
            }
        }
    }
    let mut chosen: Vec<usize> = chosen.into_iter().collect();
    chosen.sort_unstable();
    chosen
}

fn summarize(table: &LabelTable, keys: &LabelKeys, name: &str, rows: &[usize]) -> PartSummary {
    let mut counts = vec![0usize; keys.names.len()];
    let mut patients = HashSet::new();
    for &row in rows {
        patients.insert(table.records[row].patient.as_str());
        for k in keys.of(row) {
            counts[k] += 1;
        }
    }
    PartSummary {
        name: name.into(),
        images: rows.len(),
        patients: patients.len(),
        labels: keys.names.iter().cloned().zip(counts).collect(),
    }
}

/// Reads NIH's list pair and returns (train_val rows, test rows, candidates in neither list).
fn official_lists(
    table: &LabelTable,
    options: &SplitOptions,
    candidates: &[usize],
) -> Result<(Vec<usize>, Vec<usize>, usize)> {
    let dir = match &options.lists_dir {
        Some(dir) => dir.clone(),
        None => table
            .source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    let index = table.index_by_image();
    let read = |name: &str| -> Result<Vec<usize>> {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(Error::Invalid(format!(
                "the official split needs NIH's {TRAIN_VAL_LIST} and {TEST_LIST}, but {} does not exist: \
                 put them next to the label file (they come with the NIH download), pass --lists DIR, \
                 or use --strategy patient",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let mut rows = Vec::new();
        let mut unknown = Vec::new();
        let mut seen = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let image = line.trim();
            if image.is_empty() {
                continue;
            }
            match index.get(image) {
                Some(&row) => {
                    if !seen.insert(row) {
                        return Err(Error::Csv {
                            path: path.clone(),
                            line: Some(n as u64 + 1),
                            column: None,
                            message: format!("'{image}' is listed twice"),
                        });
                    }
                    rows.push(row);
                }
                None => unknown.push(image.to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(Error::Format {
                path: path.clone(),
                message: format!(
                    "{} listed images are not in the label file {} (e.g. {}): the lists and the label file \
                     must come from the same NIH release",
                    unknown.len(),
                    table.source.display(),
                    unknown.iter().take(EXAMPLES).cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        Ok(rows)
    };
    let train_val = read(TRAIN_VAL_LIST)?;
    let test = read(TEST_LIST)?;

    let test_set: HashSet<usize> = test.iter().copied().collect();
    let both: Vec<&str> = train_val
        .iter()
        .filter(|r| test_set.contains(r))
        .map(|&r| table.records[r].image.as_str())
        .collect();
    if !both.is_empty() {
        return Err(Error::Invalid(format!(
            "{} images are in both {TRAIN_VAL_LIST} and {TEST_LIST} in {} (e.g. {})",
            both.len(),
            dir.display(),
            both.iter().take(EXAMPLES).copied().collect::<Vec<_>>().join(", ")
        )));
    }
    let test_patients: HashSet<&str> = test.iter().map(|&r| table.records[r].patient.as_str()).collect();
    let mut shared: Vec<&str> = train_val
        .iter()
        .map(|&r| table.records[r].patient.as_str())
        .filter(|p| test_patients.contains(p))
        .collect();
    shared.sort_unstable();
    shared.dedup();
    if !shared.is_empty() {
        return Err(Error::Invalid(format!(
            "{TRAIN_VAL_LIST} and {TEST_LIST} in {} are not patient-disjoint: {} patients have images in both \
             (e.g. patient {}); NIH's official lists are disjoint, so these are not them. Use --strategy patient",
            dir.display(),
            shared.len(),
            shared.iter().take(EXAMPLES).copied().collect::<Vec<_>>().join(", ")
        )));
    }

    let usable: HashSet<usize> = candidates.iter().copied().collect();
    let listed: HashSet<usize> = train_val.iter().chain(&test).copied().collect();
    let not_in_lists = candidates.iter().filter(|r| !listed.contains(r)).count();
    let train_val: Vec<usize> = train_val.into_iter().filter(|r| usable.contains(r)).collect();
    let mut test: Vec<usize> = test.into_iter().filter(|r| usable.contains(r)).collect();
    test.sort_unstable();
    Ok((train_val, test, not_in_lists))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 12 patients, 1–3 images each, a rare label (Hernia) on 3 patients.
    fn fixture() -> LabelTable {
        let mut text = String::from(
            "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,\
             OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n",
        );
        let findings = [
            "Hernia",
            "No Finding",
            "Effusion|Hernia",
            "Atelectasis",
            "No Finding",
            "Effusion",
            "Hernia|Atelectasis",
            "No Finding",
            "Atelectasis|Effusion",
            "No Finding",
            "Effusion",
            "No Finding",
        ];
        for (p, finding) in findings.iter().enumerate() {
            for f in 0..(p % 3 + 1) {
                let finding = if f == 0 { finding } else { "No Finding" };
                text.push_str(&format!(
                    "{:08}_{f:03}.png,{finding},{f},{},50,M,PA,2500,2048,0.168,0.168\n",
                    p + 1,
                    p + 1
                ));
            }
        }
        LabelTable::from_text("fixture.csv", text).unwrap()
    }

    fn options(strategy: Strategy) -> SplitOptions {
        SplitOptions {
            strategy,
            val_fraction: 0.25,
            test_fraction: 0.25,
            ..SplitOptions::default()
        }
    }

    fn patients(t: &LabelTable, rows: &[usize]) -> HashSet<String> {
        rows.iter().map(|&r| t.records[r].patient.clone()).collect()
    }

    fn assert_disjoint(t: &LabelTable, s: &Split) {
        let (a, b, c) = (patients(t, &s.train), patients(t, &s.val), patients(t, &s.test));
        assert!(a.is_disjoint(&b) && a.is_disjoint(&c) && b.is_disjoint(&c), "{s:?}");
    }

    #[test]
    fn patient_split_covers_every_row_once_and_is_disjoint() {
        let t = fixture();
        let s = split(&t, &options(Strategy::Patient)).unwrap();
        assert_disjoint(&t, &s);
        let mut all: Vec<usize> = [s.train.clone(), s.val.clone(), s.test.clone()].concat();
        all.sort_unstable();
        assert_eq!(all, (0..t.len()).collect::<Vec<_>>());
        let hernia = |rows: &[usize]| rows.iter().filter(|&&r| t.records[r].has(13)).count();
        // 3 Hernia patients, 3 splits: stratification puts one in each.
        assert!(
            hernia(&s.train) > 0 && hernia(&s.val) > 0 && hernia(&s.test) > 0,
            "{s:?}"
        );
        assert_eq!(s.report.parts[0].images, s.train.len());
    }

    #[test]
    fn same_seed_same_split_other_seed_differs() {
        let t = fixture();
        let a = split(&t, &options(Strategy::Patient)).unwrap();
        let b = split(&t, &options(Strategy::Patient)).unwrap();
        assert_eq!((&a.train, &a.val, &a.test), (&b.train, &b.val, &b.test));
        let differs = (1..20).any(|seed| {
            let c = split(
                &t,
                &SplitOptions {
                    seed,
                    ..options(Strategy::Patient)
                },
            )
            .unwrap();
            c.test != a.test
        });
        assert!(differs, "the seed must matter");
    }

    #[test]
    fn bad_options_are_clear_errors() {
        let t = fixture();
        let cases = [
            (
                SplitOptions {
                    val_fraction: -0.1,
                    ..SplitOptions::default()
                },
                "--val -0.1 is not a fraction",
            ),
            (
                SplitOptions {
                    val_fraction: 0.5,
                    test_fraction: 0.5,
                    ..SplitOptions::default()
                },
                "leave nothing for training",
            ),
            (
                SplitOptions {
                    test_fraction: f64::NAN,
                    ..SplitOptions::default()
                },
                "--test NaN",
            ),
            (
                SplitOptions {
                    strategy: Strategy::Balanced,
                    per_class: Some(0),
                    ..SplitOptions::default()
                },
                "--per-class 0",
            ),
            (
                SplitOptions {
                    strategy: Strategy::Balanced,
                    ..SplitOptions::default()
                },
                "needs --per-class",
            ),
        ];
        for (o, expected) in cases {
            let message = split(&t, &o).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn balanced_caps_every_label_and_reports_shortfalls() {
        let t = fixture();
        let o = SplitOptions {
            strategy: Strategy::Balanced,
            per_class: Some(4),
            val_fraction: 0.25,
            test_fraction: 0.25,
            ..SplitOptions::default()
        };
        let s = split(&t, &o).unwrap();
        assert_disjoint(&t, &s);
        let keys = LabelKeys::new(&t);
        let mut per_label = vec![0; keys.names.len()];
        for &row in s.train.iter().chain(&s.val).chain(&s.test) {
            for k in keys.of(row) {
                per_label[k] += 1;
            }
        }
        for (k, &n) in per_label.iter().enumerate() {
            assert!(n <= 4, "{} has {n} images", keys.names[k]);
        }
        // Hernia has 3 images in the file: all of them cannot exceed 3, so it falls short.
        let hernia = s.report.shortfalls.iter().find(|f| f.label == "Hernia").unwrap();
        assert_eq!(hernia.wanted, 4);
        assert!(hernia.got <= 3);
        // Labels absent from the fixture (e.g. Pneumonia) are shortfalls with 0.
        assert!(s.report.shortfalls.iter().any(|f| f.label == "Pneumonia" && f.got == 0));
        let total: usize = s.train.len() + s.val.len() + s.test.len();
        assert!(total > 0 && total < t.len());
    }

    #[test]
    fn official_lists_are_checked() {
        let t = fixture();
        let dir = tempfile::tempdir().unwrap();
        let o = SplitOptions {
            strategy: Strategy::Official,
            val_fraction: 0.2,
            lists_dir: Some(dir.path().into()),
            ..SplitOptions::default()
        };
        let message = split(&t, &o).unwrap_err().to_string();
        assert!(
            message.contains("train_val_list.txt") && message.contains("does not exist"),
            "{message}"
        );

        // Patients 1..=9 train_val, 10..=12 test.
        let names = |range: std::ops::RangeInclusive<usize>| {
            t.records
                .iter()
                .filter(|r| range.contains(&r.patient.parse::<usize>().unwrap()))
                .map(|r| format!("{}\n", r.image))
                .collect::<String>()
        };
        std::fs::write(dir.path().join(TRAIN_VAL_LIST), names(1..=9)).unwrap();
        std::fs::write(dir.path().join(TEST_LIST), names(10..=12)).unwrap();
        let s = split(&t, &o).unwrap();
        assert_disjoint(&t, &s);
        assert_eq!(patients(&t, &s.test).len(), 3);
        assert!(!s.val.is_empty());
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), t.len());

        std::fs::write(dir.path().join(TEST_LIST), names(10..=11)).unwrap();
        let s = split(&t, &o).unwrap();
        assert_eq!(
            s.report.not_in_lists, 3,
            "patient 12's three images are in neither list"
        );
        assert!(!patients(&t, &s.train).contains("12") && !patients(&t, &s.val).contains("12"));

        std::fs::write(dir.path().join(TEST_LIST), names(9..=12)).unwrap();
        let message = split(&t, &o).unwrap_err().to_string();
        assert!(message.contains("images are in both"), "{message}");

        std::fs::write(dir.path().join(TRAIN_VAL_LIST), names(1..=8) + "00000009_000.png\n").unwrap();
        std::fs::write(dir.path().join(TEST_LIST), names(10..=12) + "00000009_001.png\n").unwrap();
        let message = split(&t, &o).unwrap_err().to_string();
        assert!(
            message.contains("not patient-disjoint") && message.contains("patient 9"),
            "{message}"
        );

        std::fs::write(dir.path().join(TEST_LIST), names(10..=12) + "99999999_000.png\n").unwrap();
        let message = split(&t, &o).unwrap_err().to_string();
        assert!(
            message.contains("1 listed images are not in the label file") && message.contains("99999999_000.png"),
            "{message}"
        );
    }

    #[test]
    fn images_folder_drops_missing_rows_and_write_round_trips() {
        let t = fixture();
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        for r in t.records.iter().skip(2) {
            std::fs::write(images.join(&r.image), b"").unwrap();
        }
        let o = SplitOptions {
            images_dir: Some(images),
            ..options(Strategy::Patient)
        };
        let s = split(&t, &o).unwrap();
        assert_eq!(s.report.missing_on_disk, 2);
        assert!(!s.train.iter().chain(&s.val).chain(&s.test).any(|&r| r < 2));

        let out = dir.path().join("out");
        let written = write(&t, &s, &out).unwrap();
        assert_eq!(written.len(), 4);
        let train = LabelTable::load(out.join("train.csv")).unwrap();
        assert_eq!(train.format, t.format);
        assert_eq!(
            train.records,
            s.train.iter().map(|&r| t.records[r].clone()).collect::<Vec<_>>()
        );
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("split.json")).unwrap()).unwrap();
        assert_eq!(report["strategy"], "patient");
    }
}
