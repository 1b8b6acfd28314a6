//! `cxr8 dataset stats`: label-file statistics as aligned text tables or stable JSON.

use std::path::PathBuf;

use anyhow::Context;

use crate::data::stats::{self, Stats};
use crate::data::LabelTable;

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Label file: NIH Data_Entry_2017*.csv (also .gz), Kaggle sample_labels.csv or a one-hot CSV.
    #[arg(long)]
    pub labels: PathBuf,
    /// Image folder: also report label-file images missing on disk (NIH's images_001… subfolders are searched).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Print JSON (a stable interface) instead of text tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StatsArgs) -> anyhow::Result<()> {
    let table =
        LabelTable::load(&args.labels).with_context(|| format!("reading label file {}", args.labels.display()))?;
    let mut stats = stats::compute(&table);
    if let Some(dir) = &args.images {
        stats::check_images(&mut stats, &table, dir)
            .with_context(|| format!("looking for the images in {}", dir.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", render(&stats));
    }
    Ok(())
}

/// The text report: one aligned table per statistic.
pub fn render(s: &Stats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "{}", s.source.display());
    let _ = writeln!(w, "  format    {}", kebab(&s.format));
    let _ = writeln!(w, "  task      {}", kebab(&s.task));
    let _ = writeln!(w, "  images    {:>9}", s.images);
    let _ = writeln!(w, "  patients  {:>9}", s.patients);

    let width = s.label_table.iter().map(|l| l.label.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(
        w,
        "\nLabels\n  {:<width$}  {:>7}  {:>6}  {:>8}",
        "label", "images", "%", "patients"
    );
    for l in &s.label_table {
        let _ = writeln!(
            w,
            "  {:<width$}  {:>7}  {:>6.2}  {:>8}",
            l.label, l.images, l.percent, l.patients
        );
    }

    let c = &s.cooccurrence;
    let _ = writeln!(w, "\nCo-occurrence (images with both labels; columns numbered as rows)");
    let cw = c
        .counts
        .iter()
        .flatten()
        .max()
        .map(|m| m.to_string().len())
        .unwrap_or(1)
        .max(3);
    let _ = write!(w, "  {:>2} {:<width$}", "", "");
    for j in 0..c.labels.len() {
        let _ = write!(w, " {:>cw$}", j + 1);
    }
    let _ = writeln!(w);
    for (i, row) in c.counts.iter().enumerate() {
        let _ = write!(w, "  {:>2} {:<width$}", i + 1, c.labels[i]);
        for n in row {
            let _ = write!(w, " {n:>cw$}");
        }
        let _ = writeln!(w);
    }

    let _ = writeln!(w, "\nLabels per image\n  labels   images");
    for (k, n) in s.labels_per_image.iter().enumerate() {
        let _ = writeln!(w, "  {k:>6}  {n:>7}");
    }

    let p = &s.images_per_patient;
    let _ = writeln!(
        w,
        "\nImages per patient\n  min {}  median {}  mean {:.2}  max {}\n  images   patients",
        p.min, p.median, p.mean, p.max
    );
    for b in &p.histogram {
        let range = match b.to {
            Some(to) if to == b.from => format!("{to}"),
            Some(to) => format!("{}-{to}", b.from),
            None => format!("{}+", b.from),
        };
        let _ = writeln!(w, "  {range:>7}  {:>8}", b.patients);
    }

    let _ = writeln!(w, "\nViews");
    for (view, n) in &s.views {
        let _ = writeln!(w, "  {view:<8} {n:>8}");
    }
    let _ = writeln!(
        w,
        "\nSex\n  male     {:>8}\n  female   {:>8}\n  unknown  {:>8}",
        s.sex.male, s.sex.female, s.sex.unknown
    );
    match &s.age {
        Some(a) => {
            let _ = writeln!(
                w,
                "\nAge (years, plausible ages only)\n  min {}  median {}  mean {:.1}  max {}  (known {}, missing {})",
                a.min, a.median, a.mean, a.max, a.known, a.missing
            );
            if a.implausible > 0 {
                let _ = writeln!(
                    w,
                    "  {} implausible ages (> {}) left out, e.g. {}",
                    a.implausible,
                    stats::MAX_PLAUSIBLE_AGE,
                    a.implausible_examples.join(", ")
                );
            }
        }
        None => {
            let _ = writeln!(w, "\nAge\n  not in this file");
        }
    }
    if let Some(m) = &s.missing_images {
        let _ = writeln!(
            w,
            "\nImages on disk ({})\n  found {}  missing {} of {}",
            m.dir.display(),
            m.found_on_disk,
            m.missing,
            s.images
        );
        if !m.examples.is_empty() {
            let _ = writeln!(w, "  e.g. {}", m.examples.join(", "));
        }
    }
    out
}

fn kebab(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
