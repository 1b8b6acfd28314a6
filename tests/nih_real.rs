//! Stats and splits on the real NIH label file (`../shared/data/nih`, 112,120 rows).

use std::collections::HashSet;

use cxr8::data::split::{self, Split, SplitOptions, Strategy};
use cxr8::data::{stats, LabelTable};

use crate::util::nih_dir;

fn nih() -> LabelTable {
    LabelTable::load(nih_dir().join("Data_Entry_2017_v2020.csv.gz")).expect("the real NIH label file loads")
}

/// Counted independently of our parser with Python's csv module:
/// `for r in csv.reader(gzip.open(path,'rt')): counter.update(r[1].split('|'))` over the data rows.
const LABEL_COUNTS: [(&str, usize); 15] = [
    ("Atelectasis", 11559),
    ("Cardiomegaly", 2776),
    ("Consolidation", 4667),
    ("Edema", 2303),
    ("Effusion", 13317),
    ("Emphysema", 2516),
    ("Fibrosis", 1686),
    ("Hernia", 227),
    ("Infiltration", 19894),
    ("Mass", 5782),
    ("No Finding", 60361),
    ("Nodule", 6331),
    ("Pleural_Thickening", 3385),
    ("Pneumonia", 1431),
    ("Pneumothorax", 5302),
];

fn patients(t: &LabelTable, rows: &[usize]) -> HashSet<String> {
    rows.iter().map(|&r| t.records[r].patient.clone()).collect()
}

fn assert_patient_disjoint(t: &LabelTable, s: &Split) {
    let (a, b, c) = (patients(t, &s.train), patients(t, &s.val), patients(t, &s.test));
    assert!(a.is_disjoint(&b), "train and val share patients");
    assert!(a.is_disjoint(&c), "train and test share patients");
    assert!(b.is_disjoint(&c), "val and test share patients");
    let rows: HashSet<usize> = s.train.iter().chain(&s.val).chain(&s.test).copied().collect();
    assert_eq!(
        rows.len(),
        s.train.len() + s.val.len() + s.test.len(),
        "an image is in two splits"
    );
}

#[test]
fn nih_stats_match_independent_counts() {
    let t = nih();
    let s = stats::compute(&t);
    assert_eq!(s.images, 112_120);
    assert_eq!(s.patients, 30_805);
    for (label, count) in LABEL_COUNTS {
        assert_eq!(s.labels[label], count, "{label}");
    }
    assert_eq!(s.labels.len(), 15);
    // Same Python pass: View Position, Patient Gender, and findings per non-"No Finding" row.
    assert_eq!((s.views["PA"], s.views["AP"]), (67_310, 44_810));
    assert_eq!((s.sex.male, s.sex.female, s.sex.unknown), (63_340, 48_780, 0));
    assert_eq!(
        s.labels_per_image,
        [60_361, 30_963, 14_306, 4_856, 1_247, 301, 67, 16, 1, 2]
    );
    let age = s.age.as_ref().unwrap();
    // The v2020 file fixed the 2017 file's ages over 120; max is 95.
    assert_eq!((age.min, age.max, age.implausible), (0, 95, 0));
    assert_eq!(s.images_per_patient.max, 184);

    let json = serde_json::to_value(&s).unwrap();
    for key in [
        "images",
        "patients",
        "labels",
        "cooccurrence",
        "images_per_patient",
        "views",
        "sex",
        "age",
    ] {
        assert!(json.get(key).is_some(), "stats JSON lacks '{key}'");
    }
    assert_eq!(json["labels"]["No Finding"], 60_361);
}

#[test]
fn nih_missing_images_against_the_real_image_folder() {
    let t = nih();
    let mut s = stats::compute(&t);
    stats::check_images(&mut s, &t, &nih_dir().join("images_256")).unwrap();
    let m = s.missing_images.unwrap();
    assert_eq!(m.found_on_disk, 581);
    assert_eq!(m.missing, 112_120 - 581);
}

#[test]
fn nih_patient_split_is_disjoint_stratified_and_seeded() {
    let t = nih();
    let options = SplitOptions::default();
    let s = split::split(&t, &options).unwrap();
    assert_patient_disjoint(&t, &s);
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), t.len());
    let share = |n: usize| n as f64 / t.len() as f64;
    assert!(
        (share(s.val.len()) - 0.1).abs() < 0.01,
        "val share {}",
        share(s.val.len())
    );
    assert!(
        (share(s.test.len()) - 0.2).abs() < 0.01,
        "test share {}",
        share(s.test.len())
    );
    // Stratification: every label, Hernia (227 images) included, is near its share in every split.
    for part in &s.report.parts {
        let fraction = part.images as f64 / t.len() as f64;
        for (label, n) in &part.labels {
            let all = LABEL_COUNTS.iter().find(|(l, _)| l == label).unwrap().1;
            let expected = fraction * all as f64;
            assert!(
                (*n as f64 - expected).abs() <= (0.25 * expected).max(3.0),
                "{}: {label} has {n}, expected about {expected:.0}",
                part.name
            );
        }
    }
    let again = split::split(&t, &options).unwrap();
    assert_eq!((&s.train, &s.val, &s.test), (&again.train, &again.val, &again.test));
    let other = split::split(&t, &SplitOptions { seed: 7, ..options }).unwrap();
    assert_ne!(s.test, other.test, "another seed gives another split");
}

#[test]
fn nih_official_split_from_a_list_pair() {
    let t = nih();
    // A patient-disjoint list pair made from a patient split, written as NIH writes its lists.
    let base = split::split(&t, &SplitOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = |rows: &[usize]| {
        rows.iter()
            .map(|&r| format!("{}\n", t.records[r].image))
            .collect::<String>()
    };
    let train_val: Vec<usize> = base.train.iter().chain(&base.val).copied().collect();
    std::fs::write(dir.path().join(split::TRAIN_VAL_LIST), list(&train_val)).unwrap();
    std::fs::write(dir.path().join(split::TEST_LIST), list(&base.test)).unwrap();
    let options = SplitOptions {
        strategy: Strategy::Official,
        lists_dir: Some(dir.path().into()),
        ..SplitOptions::default()
    };
    let s = split::split(&t, &options).unwrap();
    assert_patient_disjoint(&t, &s);
    assert_eq!(s.test, base.test, "test is exactly the test list");
    assert_eq!(s.report.not_in_lists, 0);
    assert!((s.val.len() as f64 / t.len() as f64 - 0.1).abs() < 0.01);
    let again = split::split(&t, &options).unwrap();
    assert_eq!(s.val, again.val);

    // Move one image of a test patient into train_val: the pair is no longer patient-disjoint.
    // (A patient with two test images, so the patient keeps one there.)
    let at = (1..base.test.len())
        .find(|&i| t.records[base.test[i]].patient == t.records[base.test[i - 1]].patient)
        .unwrap();
    let mut leaky = train_val.clone();
    leaky.push(base.test[at]);
    let rest: Vec<usize> = base.test.iter().copied().filter(|&r| r != base.test[at]).collect();
    std::fs::write(dir.path().join(split::TRAIN_VAL_LIST), list(&leaky)).unwrap();
    std::fs::write(dir.path().join(split::TEST_LIST), list(&rest)).unwrap();
    let message = split::split(&t, &options).unwrap_err().to_string();
    assert!(message.contains("not patient-disjoint"), "{message}");
}

#[test]
fn nih_balanced_split_has_n_per_label() {
    let t = nih();
    let options = SplitOptions {
        strategy: Strategy::Balanced,
        per_class: Some(40),
        ..SplitOptions::default()
    };
    let s = split::split(&t, &options).unwrap();
    assert_patient_disjoint(&t, &s);
    assert!(s.report.shortfalls.is_empty(), "{:?}", s.report.shortfalls);
    // Quotas: val round(40 × 0.1) = 4, test round(40 × 0.2) = 8, train the other 28.
    for (part, quota) in s.report.parts.iter().zip([28, 4, 8]) {
        for (label, n) in &part.labels {
            assert_eq!(*n, quota, "{} {label}", part.name);
        }
    }
    let again = split::split(&t, &options).unwrap();
    assert_eq!((&s.train, &s.val, &s.test), (&again.train, &again.val, &again.test));
}
