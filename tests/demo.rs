//! The demo data set end to end: files on disk, read back through the real-data path, checked
//! against the embedded NIH statistics and the real NIH label file.

use std::collections::HashMap;

use cxr8::data::demo::phantom::{self, Lesion, Phantom};
use cxr8::data::demo::stats::NihStats;
use cxr8::data::demo::{self, DemoConfig, GeneratorFile};
use cxr8::data::labels::NIH_FINDINGS;
use cxr8::data::{LabelFormat, LabelTable};

use crate::util::nih_dir;

fn config(dir: &std::path::Path, seed: u64) -> DemoConfig {
    DemoConfig {
        out: dir.join("demo"),
        images: 240,
        size: 64,
        seed,
    }
}

fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("images"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out.push(("csv".into(), std::fs::read(dir.join("Data_Entry_2017.csv")).unwrap()));
    out
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let a = demo::generate(&config(tmp.path(), 7)).unwrap();
    let first = files(&a.out);
    let b = demo::generate(&config(tmp.path(), 7)).unwrap();
    assert_eq!(first, files(&b.out), "same seed must give identical CSV and PNG bytes");
    let c = demo::generate(&config(tmp.path(), 8)).unwrap();
    assert_ne!(first, files(&c.out));
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("demo")],
        "no temp folders left"
    );
}

#[test]
fn csv_reads_back_as_nih_and_matches_generator_json() {
    let tmp = tempfile::tempdir().unwrap();
    let report = demo::generate(&config(tmp.path(), 3)).unwrap();
    let table = LabelTable::load(&report.label_file).unwrap();
    assert_eq!(table.format, LabelFormat::NihDataEntry);
    assert_eq!(table.len(), 240);
    let text = std::fs::read_to_string(&report.label_file).unwrap();
    assert!(text.starts_with(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,\
         OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
    ));
    let generator: GeneratorFile =
        serde_json::from_slice(&std::fs::read(report.out.join("generator.json")).unwrap()).unwrap();
    assert_eq!(generator.images.len(), table.len());
    let mut patients: Vec<&str> = table.records.iter().map(|r| r.patient.as_str()).collect();
    patients.dedup();
    assert_eq!(patients.len(), report.patients);
    assert!(report.patients < 200, "follow-ups: {} patients", report.patients);
    for (record, spec) in table.records.iter().zip(&generator.images) {
        assert_eq!(record.image, spec.image);
        assert_eq!(record.patient, spec.patient.to_string());
        let mut csv_labels: Vec<&str> = (0..14).filter(|&i| record.has(i)).map(|i| NIH_FINDINGS[i]).collect();
        csv_labels.sort();
        assert_eq!(csv_labels, spec.findings, "{}", spec.image);
        let drawn: Vec<&str> = spec.phantom.lesions.iter().map(Lesion::label).collect();
        assert_eq!(drawn, spec.findings, "{}: drawn lesions differ from labels", spec.image);
        let img = image::open(report.out.join("images").join(&record.image)).unwrap();
        assert_eq!(img.color(), image::ColorType::L8);
        assert_eq!((img.width(), img.height()), (64, 64));
    }
    assert!(std::fs::read_to_string(report.out.join("README.txt"))
        .unwrap()
        .contains("SYNTHETIC"));
}

#[test]
fn label_frequencies_follow_nih_enriched_for_rare_findings() {
    let specs = demo::plan(&DemoConfig {
        images: 20_000,
        ..DemoConfig::default()
    });
    let stats = NihStats::embedded();
    let shares: HashMap<String, f64> = stats.demo_label_shares().into_iter().collect();
    let nih: HashMap<String, f64> = stats.label_shares().into_iter().collect();
    // Enrichment lifts the rarest finding well above NIH's 0.2 %, and keeps the common order.
    assert!(shares["Hernia"] > 0.015 && nih["Hernia"] < 0.003, "{shares:?}");
    assert!(shares["Infiltration"] > shares["Hernia"]);
    for finding in NIH_FINDINGS {
        let got = specs.iter().filter(|s| s.findings.iter().any(|f| f == finding)).count() as f64 / 20_000.0;
        let want = shares[finding];
        // Binomial noise plus patient clustering: allow 30 % relative or 0.4 percentage points.
        assert!(
            (got - want).abs() < (0.3 * want).max(0.004),
            "{finding}: {got:.4} vs expected {want:.4}"
        );
    }
    // No finding is only drawn in the non-enriched share: 70 % of NIH's 53.8 %.
    let none = specs.iter().filter(|s| s.findings.is_empty()).count() as f64 / 20_000.0;
    let want = (1.0 - cxr8::data::demo::stats::ENRICHED_SHARE) * 0.538;
    assert!((none - want).abs() < 0.03, "No Finding share {none} vs {want}");
}

/// Mean brightness of a phantom with and without one lesion, inside a box (x0, y0, x1, y1) in
/// [-1, 1] coordinates, averaged over several patients.
fn effect(label: &str, region: impl Fn(&Lesion, &phantom::Anatomy) -> (f32, f32, f32, f32)) -> f64 {
    use rand::SeedableRng;
    let size = 64;
    let mut total = 0.0;
    for seed in 0..8u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut anatomy = phantom::Anatomy::sample(&mut rng, false).for_image(&mut rng, false);
        anatomy.noise = 0.0;
        let lesion = Lesion::sample(label, &anatomy, &mut rng).unwrap();
        let (x0, y0, x1, y1) = region(&lesion, &anatomy);
        let mean = |lesions: Vec<Lesion>| {
            let px = phantom::render(
                &Phantom {
                    anatomy: anatomy.clone(),
                    lesions,
                    noise_seed: 1,
                },
                size,
            );
            let (mut sum, mut n) = (0.0, 0);
            for row in 0..size as usize {
                for col in 0..size as usize {
                    let x = (col as f32 + 0.5) / size as f32 * 2.0 - 1.0;
                    let y = (row as f32 + 0.5) / size as f32 * 2.0 - 1.0;
                    if x >= x0 && x <= x1 && y >= y0 && y <= y1 {
                        sum += px[row * size as usize + col] as f64;
                        n += 1;
                    }
                }
            }
            assert!(n > 0, "{label}: empty region");
            sum / n as f64
        };
        total += mean(vec![lesion]) - mean(vec![]);
    }
    total / 8.0
}

fn around(x: f32, y: f32, r: f32) -> (f32, f32, f32, f32) {
    (x - r, y - r, x + r, y + r)
}

fn side_box(side: f32, a: &phantom::Anatomy, y0: f32, y1: f32) -> (f32, f32, f32, f32) {
    let (l, r) = (
        a.lung_center_x - a.lung_half_width * 0.7,
        a.lung_center_x + a.lung_half_width * 0.9,
    );
    if side < 0.0 {
        (-r, y0, -l, y1)
    } else {
        (l, y0, r, y1)
    }
}

#[test]
fn each_finding_changes_the_pixels_where_it_should() {
    let brighter =
        |label: &str, d: f64| assert!(d > 8.0, "{label} should brighten its region by > 8 levels, got {d:.1}");
    let darker = |label: &str, d: f64| assert!(d < -4.0, "{label} should darken its region, got {d:.1}");
    let one_side = |l: &Lesion| match *l {
        Lesion::Effusion { side, .. }
        | Lesion::Pneumothorax { side, .. }
        | Lesion::PleuralThickening { side, .. }
        | Lesion::Atelectasis { side, .. }
        | Lesion::Consolidation { side, .. } => side,
        _ => unreachable!(),
    };
    brighter(
        "Effusion",
        effect("Effusion", |l, a| {
            side_box(one_side(l), a, a.diaphragm_right_y - 0.15, a.diaphragm_right_y + 0.05)
        }),
    );
    darker(
        "Pneumothorax",
        effect("Pneumothorax", |l, a| {
            let s = one_side(l);
            let x = s * (a.lung_center_x + a.lung_half_width * 0.85);
            (x.min(x + s * 0.08), -0.3, x.max(x + s * 0.08), 0.1)
        }),
    );
    brighter(
        "Cardiomegaly",
        effect("Cardiomegaly", |_, a| {
            let edge = a.heart_center_x + a.heart_half_width * 1.2;
            (
                edge - 0.05,
                a.heart_center_y - 0.05,
                edge + 0.05,
                a.heart_center_y + 0.1,
            )
        }),
    );
    for label in ["Nodule", "Mass"] {
        brighter(
            label,
            effect(label, |l, _| match *l {
                Lesion::Nodule { x, y, radius, .. } | Lesion::Mass { x, y, radius, .. } => around(x, y, radius * 0.6),
                _ => unreachable!(),
            }),
        );
    }
    brighter(
        "Pneumonia",
        effect("Pneumonia", |l, _| match *l {
            Lesion::Pneumonia { x, y, rx, .. } => around(x, y, rx * 0.5),
            _ => unreachable!(),
        }),
    );
    brighter(
        "Consolidation",
        effect("Consolidation", |l, a| match *l {
            Lesion::Consolidation { side, top, height, .. } => side_box(side, a, top + 0.04, top + height * 0.6),
            _ => unreachable!(),
        }),
    );
    brighter(
        "Atelectasis",
        effect("Atelectasis", |l, a| {
            side_box(one_side(l), a, -0.2, a.diaphragm_right_y)
        }),
    );
    brighter(
        "Infiltration",
        effect("Infiltration", |l, _| match l {
            Lesion::Infiltration { patches } => around(patches[0].x, patches[0].y, patches[0].radius * 0.4),
            _ => unreachable!(),
        }),
    );
    brighter(
        "Edema",
        effect("Edema", |_, a| {
            around(-(a.lung_center_x - a.lung_half_width * 0.3), 0.0, 0.1)
        }),
    );
    darker(
        "Emphysema",
        effect("Emphysema", |_, a| around(-a.lung_center_x, -0.3, 0.12)),
    );
    brighter(
        "Fibrosis",
        effect("Fibrosis", |_, a| {
            side_box(-1.0, a, a.diaphragm_right_y - 0.3, a.diaphragm_right_y - 0.05)
        }),
    );
    brighter(
        "Pleural_Thickening",
        effect("Pleural_Thickening", |l, a| {
            let s = one_side(l);
            let x = s * (a.lung_center_x + a.lung_half_width * 0.9);
            (x.min(x - s * 0.1), -0.3, x.max(x - s * 0.1), 0.1)
        }),
    );
    darker(
        "Hernia",
        effect("Hernia", |l, _| match *l {
            Lesion::Hernia { x, y, radius } => (x - radius * 0.5, y - radius * 0.6, x + radius * 0.5, y - radius * 0.1),
            _ => unreachable!(),
        }),
    );
}

#[test]
fn ensure_generates_once_and_repairs_an_incomplete_set() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), 11);
    let first = demo::ensure_with(&config).unwrap();
    assert!(first.generated);
    let csv = config.out.join("Data_Entry_2017.csv");
    let stamp = std::fs::metadata(&csv).unwrap().modified().unwrap();
    let again = demo::ensure_with(&config).unwrap();
    assert!(!again.generated, "a complete set must not be regenerated");
    assert_eq!(again.images, first.images);
    assert_eq!(std::fs::metadata(&csv).unwrap().modified().unwrap(), stamp);
    let table = LabelTable::load(&csv).unwrap();
    std::fs::remove_file(config.out.join("images").join(&table.records[5].image)).unwrap();
    let repaired = demo::ensure_with(&config).unwrap();
    assert!(repaired.generated, "a missing image makes the set incomplete");
    assert!(demo::check_complete(&config.out).is_some());
}

#[test]
fn refuses_to_replace_a_folder_that_is_not_a_demo_set() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), 1);
    std::fs::create_dir_all(&config.out).unwrap();
    std::fs::write(config.out.join("mine.txt"), "keep").unwrap();
    let err = demo::generate(&config).unwrap_err().to_string();
    assert!(err.contains("not a cxr8 demo data set"), "{err}");
    assert!(config.out.join("mine.txt").is_file());
}

#[test]
fn embedded_statistics_match_the_real_nih_label_file() {
    let table = LabelTable::load(nih_dir().join("Data_Entry_2017_v2020.csv.gz")).unwrap();
    let mut combos: HashMap<Vec<String>, u64> = HashMap::new();
    let mut per_patient: HashMap<&str, u32> = HashMap::new();
    for r in &table.records {
        let mut labels: Vec<String> = (0..14)
            .filter(|&i| r.has(i))
            .map(|i| NIH_FINDINGS[i].to_string())
            .collect();
        labels.sort();
        *combos.entry(labels).or_default() += 1;
        *per_patient.entry(r.patient.as_str()).or_default() += 1;
    }
    let stats = NihStats::embedded();
    let embedded: HashMap<Vec<String>, u64> = stats.combinations.items.iter().cloned().collect();
    assert_eq!(
        embedded, combos,
        "nih_stats.txt [combinations] differs from the real file"
    );
    let mut histogram: HashMap<u32, u64> = HashMap::new();
    for n in per_patient.values() {
        *histogram.entry(*n).or_default() += 1;
    }
    let embedded: HashMap<u32, u64> = stats.images_per_patient.items.iter().cloned().collect();
    assert_eq!(
        embedded, histogram,
        "nih_stats.txt [images_per_patient] differs from the real file"
    );
}
