//! Charts drawn with plotters from plain data: line charts (several series, legend, EMA smoothing,
//! log y, spike-preserving downsampling), bar charts, confusion matrices (N×N and a grid of
//! per-label 2×2s) and count heatmaps. Knows nothing about runs, the store or Burn.
//!
//! A handler describes what to draw as a [`Figure`]; the same value is drawn as SVG or PNG (or
//! written as CSV), so every format of one chart shows the same data, and [`Figure::digest`]
//! names that data. The PNG's text is drawn with the DejaVu Sans the binary carries, so a machine
//! without fonts draws the same PNG; SVG text stays `<text>` for the browser to lay out, measured
//! with the same font so both formats are laid out alike.

mod bar;
mod line;
mod matrix;

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

pub use bar::{BarGroup, ProbabilityBar};
pub use line::{downsample_min_max, ema_debiased, format_count, LineChart, Series, XAxis};
pub use matrix::{LabelPanel, MatrixView};

#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct Error(String);

fn draw_error<E: std::fmt::Debug>(e: E) -> Error {
    Error(format!("{e:?}"))
}

/// Colour-blind-friendly qualitative palette: the 8 of Okabe & Ito ("Color Universal Design",
/// 2008), then wine from Paul Tol's "muted" scheme and a mid grey, so the compare page's 10 runs
/// get 10 distinct colours (static/style.css `.c0`–`.c9` match).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
    RGBColor(136, 34, 85),
    RGBColor(153, 153, 153),
];

/// The colour of the `index`-th series, as `#rrggbb` (for legends drawn in HTML).
pub fn palette_hex(index: usize) -> String {
    let RGBColor(r, g, b) = PALETTE[index % PALETTE.len()];
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Font sizes in plotters' units. plotters writes an SVG `font-size` of size / 1.24, so 14 is
/// 11.3 px: the smallest text on any chart stays readable at 100 % zoom.
const TEXT: f64 = 14.0;
const TITLE: f64 = 18.0;
/// Text that explains a chart rather than labelling data.
const NOTE_GREY: RGBColor = RGBColor(90, 90, 90);

/// The font every chart names: an SVG asks the browser for DejaVu Sans (the face the PNG is drawn
/// with) and falls back to its sans-serif.
const FAMILY: &str = "DejaVu Sans, sans-serif";

/// Registers the embedded face under [`FAMILY`] and plain `sans-serif`: plotters' glyph backend has
/// no font until one is registered, and then never looks at the system's. Anything that draws
/// text with plotters calls this first (the chart renderers do).
pub fn register_font() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        for family in [FAMILY, "sans-serif"] {
            for style in [FontStyle::Normal, FontStyle::Bold] {
                // The bytes are a well-formed TrueType file compiled in; a failure is a build defect.
                plotters::style::register_font(family, style, dejavu::sans::regular())
                    .unwrap_or_else(|_| panic!("the embedded DejaVu Sans is not a usable font"));
            }
        }
    });
}

/// Width in pixels (at scale 1) of `text` at `size`, measured with the embedded font.
fn text_width(text: &str, size: f64) -> i32 {
    register_font();
    (FAMILY, size)
        .into_font()
        .box_size(text)
        .map(|(w, _)| w as i32)
        .unwrap_or_else(|_| (size * 0.6 * text.chars().count() as f64) as i32)
}

/// How a chart is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
    /// The figure's data as a table, for a spreadsheet or a paper's own plotting script.
    Csv,
}

impl Format {
    /// Splits a chart file name such as `loss.png` into its name and format.
    pub fn of_file(file: &str) -> Option<(&str, Format)> {
        let (name, extension) = file.rsplit_once('.')?;
        let format = match extension {
            "svg" => Format::Svg,
            "png" => Format::Png,
            "csv" => Format::Csv,
            _ => return None,
        };
        (!name.is_empty()).then_some((name, format))
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Svg => "image/svg+xml",
            Format::Png => "image/png",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// PNG pixels per SVG pixel unless asked otherwise: sharp on slides and in print.
pub const DEFAULT_PNG_SCALE: u32 = 2;
/// The largest scale accepted; a 20-class matrix at 4× is already about 4,000 px square.
pub const MAX_PNG_SCALE: u32 = 4;

/// Multiplies every length of a drawing (sizes, margins, strokes, fonts) so a PNG can be drawn
/// at several pixel densities from one layout.
#[derive(Debug, Clone, Copy)]
struct Scale(u32);

impl Scale {
    fn px(self, v: i32) -> i32 {
        v * self.0 as i32
    }

    fn upx(self, v: u32) -> u32 {
        v * self.0
    }

    fn font(self, size: f64) -> f64 {
        size * self.0 as f64
    }

    fn text(self, size: f64) -> FontDesc<'static> {
        (FAMILY, self.font(size)).into_font()
    }
}

/// What a chart shows, independent of its encoding.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Figure {
    Line {
        chart: LineChart,
        series: Vec<Series>,
    },
    /// Horizontal bars, one row per category and one bar per group within it, values in `range`.
    Bars {
        title: String,
        categories: Vec<String>,
        groups: Vec<BarGroup>,
        range: (f64, f64),
    },
    /// A confusion matrix `counts[actual][predicted]` over `classes`.
    Confusion {
        title: String,
        classes: Vec<String>,
        counts: Vec<Vec<u64>>,
        view: MatrixView,
    },
    /// Every label's 2×2 of one multi-label run in one figure (small multiples).
    LabelGrid {
        title: String,
        panels: Vec<LabelPanel>,
    },
    /// A few labels' probabilities, each against its threshold.
    Probabilities {
        bars: Vec<ProbabilityBar>,
    },
    /// A symmetric count matrix (label co-occurrence).
    Counts {
        title: String,
        labels: Vec<String>,
        counts: Vec<Vec<usize>>,
    },
}

impl Figure {
    /// The figure as SVG text.
    pub fn svg(&self) -> Result<String, Error> {
        let bytes = self.render(Format::Svg, 1)?;
        String::from_utf8(bytes).map_err(draw_error)
    }

    /// The figure in `format`; `scale` (1 to [`MAX_PNG_SCALE`]) multiplies a PNG's pixels.
    pub fn render(&self, format: Format, scale: u32) -> Result<Vec<u8>, Error> {
        register_font();
        let (w, h) = self.size();
        match format {
            Format::Svg => {
                let mut svg = String::new();
                {
                    let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
                    self.draw(&root, Scale(1))?;
                    root.present().map_err(draw_error)?;
                }
                Ok(svg.into_bytes())
            }
            Format::Png => {
                let k = Scale(scale.clamp(1, MAX_PNG_SCALE));
                let (w, h) = (k.upx(w), k.upx(h));
                let mut pixels = vec![255u8; w as usize * h as usize * 3];
                {
                    let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
                    self.draw(&root, k)?;
                    root.present().map_err(draw_error)?;
                }
                let image = image::RgbImage::from_raw(w, h, pixels)
                    .ok_or_else(|| Error("the bitmap has the wrong size".into()))?;
                let mut png = Vec::new();
                image
                    .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                    .map_err(draw_error)?;
                Ok(png)
            }
            Format::Csv => Ok(self.csv().into_bytes()),
        }
    }

    /// A hex SHA-256 of the data the figure is drawn from: equal for the SVG, PNG and CSV of
    /// one chart, different when any point, name or option differs.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).expect("figures serialise");
        hex::encode(Sha256::digest(json))
    }

    /// Size in pixels at scale 1; a matrix is at least as wide as its title.
    fn size(&self) -> (u32, u32) {
        let fit_title = |(w, h): (u32, u32), title: &str| (w.max(text_width(title, TITLE) as u32 + 40), h);
        match self {
            Figure::Line { chart, .. } => chart.size,
            Figure::Bars { categories, groups, .. } => bar::size(categories, groups),
            Figure::Probabilities { bars } => bar::probabilities_size(bars),
            Figure::Confusion { title, classes, .. } => fit_title(matrix::confusion_layout(classes).size(), title),
            Figure::LabelGrid { title, panels } => fit_title(matrix::grid_layout(panels).size(), title),
            Figure::Counts { title, labels, .. } => fit_title(matrix::counts_layout(labels).size(), title),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, k: Scale) -> Result<(), Error> {
        root.fill(&WHITE).map_err(draw_error)?;
        match self {
            Figure::Line { chart, series } => line::draw(root, k, chart, series),
            Figure::Bars {
                title,
                categories,
                groups,
                range,
            } => bar::draw(root, k, title, categories, groups, *range),
            Figure::Confusion {
                title,
                classes,
                counts,
                view,
            } => matrix::draw_confusion(root, k, title, classes, counts, *view),
            Figure::LabelGrid { title, panels } => matrix::draw_grid(root, k, title, panels),
            Figure::Probabilities { bars } => bar::draw_probabilities(root, k, bars),
            Figure::Counts { title, labels, counts } => matrix::draw_counts(root, k, title, labels, counts),
        }
    }

    /// The figure's data in long form, one value per row, with a header.
    fn csv(&self) -> String {
        let mut out = String::new();
        let mut row = |cells: &[&str]| {
            let quoted: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&quoted.join(","));
            out.push('\n');
        };
        match self {
            Figure::Line { chart, series } => {
                let x = if chart.x_label.is_empty() { "x" } else { &chart.x_label };
                let y = if chart.y_label.is_empty() { "y" } else { &chart.y_label };
                row(&["series", x, y]);
                for s in series {
                    for (px, py) in &s.points {
                        row(&[&s.name, &px.to_string(), &py.to_string()]);
                    }
                }
            }
            Figure::Bars { categories, groups, .. } => {
                row(&["category", "group", "value"]);
                for group in groups {
                    for (category, value) in categories.iter().zip(&group.values) {
                        let value = value.map_or(String::new(), |v| v.to_string());
                        row(&[category, &group.name, &value]);
                    }
                }
            }
            Figure::Confusion { classes, counts, .. } => {
                row(&["actual", "predicted", "count"]);
                for (actual, counts) in classes.iter().zip(counts) {
                    for (predicted, count) in classes.iter().zip(counts) {
                        row(&[actual, predicted, &count.to_string()]);
                    }
                }
            }
            Figure::LabelGrid { panels, .. } => {
                row(&["label", "threshold", "tn", "fp", "fn", "tp"]);
                for p in panels {
                    let [[tn, fp], [fn_, tp]] = p.counts;
                    let threshold = p.threshold.map_or(String::new(), |t| t.to_string());
                    row(&[
                        &p.label,
                        &threshold,
                        &tn.to_string(),
                        &fp.to_string(),
                        &fn_.to_string(),
                        &tp.to_string(),
                    ]);
                }
            }
            Figure::Probabilities { bars } => {
                row(&["label", "probability", "threshold"]);
                for bar in bars {
                    row(&[&bar.label, &bar.probability.to_string(), &bar.threshold.to_string()]);
                }
            }
            Figure::Counts { labels, counts, .. } => {
                row(&["label", "other label", "images"]);
                for (a, counts) in labels.iter().zip(counts) {
                    for (b, count) in labels.iter().zip(counts) {
                        row(&[a, b, &count.to_string()]);
                    }
                }
            }
        }
        out
    }
}

/// A CSV cell, quoted when it holds a separator, quote or line break (RFC 4180), and with a
/// leading `'` when a spreadsheet would otherwise run it as a formula (a run named `=1+1`).
pub fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '@']) || (text.starts_with('-') && text.parse::<f64>().is_err()) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The figure's title, centred at the top.
fn draw_title<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, k: Scale, title: &str) -> Result<(), Error> {
    let (w, _) = root.dim_in_pixel();
    root.draw(&Text::new(
        title.to_string(),
        (w as i32 / 2, k.px(16)),
        k.text(TITLE)
            .into_text_style(root)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(draw_error)?;
    Ok(())
}

fn draw_empty<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, k: Scale, title: &str) -> Result<(), Error> {
    let (w, h) = root.dim_in_pixel();
    draw_title(root, k, title)?;
    root.draw(&Text::new(
        "no data yet",
        (w as i32 / 2, h as i32 / 2),
        k.text(TEXT)
            .color(&RGBColor(120, 120, 120))
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(draw_error)?;
    Ok(())
}

/// Widens a range by `fraction` of its span on each side, and a degenerate one (one point, or a
/// flat line) to a visible span around its value.
fn pad_range(lo: f64, hi: f64, fraction: f64) -> (f64, f64) {
    let span = hi - lo;
    if span <= f64::EPSILON * lo.abs().max(1.0) {
        let half = (lo.abs() * 0.1).max(0.5);
        return (lo - half, hi + half);
    }
    (lo - span * fraction, hi + span * fraction)
}

/// Short axis labels: 0.5, 12, 1.2e-4, 3.0e6.
pub fn format_number(v: f64) -> String {
    let a = v.abs();
    // A tick meant to be 0 often lands at ±1e-17 from the arithmetic that placed it.
    if a < 1e-12 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 || (v.fract() == 0.0) {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Test helpers that read an SVG back.
#[cfg(test)]
pub(crate) mod svg_text {
    /// The texts of `<text>` elements (plotters writes the content on its own line).
    pub fn texts(svg: &str) -> Vec<&str> {
        let lines: Vec<&str> = svg.lines().collect();
        lines
            .windows(2)
            .filter(|w| w[0].starts_with("<text"))
            .map(|w| w[1].trim())
            .collect()
    }

    /// The `font-size`s of every `<text>` element, in px.
    pub fn font_sizes(svg: &str) -> Vec<f64> {
        svg.lines()
            .filter(|l| l.starts_with("<text"))
            .filter_map(|l| {
                let start = l.find("font-size=\"")? + "font-size=\"".len();
                let end = start + l[start..].find('"')?;
                l[start..end].parse().ok()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::svg_text::{font_sizes, texts};
    use super::*;

    #[test]
    fn ten_series_get_ten_distinct_colours_matching_the_stylesheet() {
        let css = include_str!("../../../static/style.css");
        let colours: Vec<String> = (0..10).map(palette_hex).collect();
        for (i, colour) in colours.iter().enumerate() {
            assert!(
                !colours[..i].contains(colour),
                "colour {i} ({colour}) repeats an earlier one"
            );
            let rule = format!(".c{i} {{ background: {colour}; }}");
            assert!(css.contains(&rule), "style.css lacks `{rule}`");
        }
        // Far apart, not merely different: at least 60 apart in some RGB channel sum.
        for (i, a) in PALETTE.iter().enumerate() {
            for b in &PALETTE[..i] {
                let distance =
                    (a.0 as i32 - b.0 as i32).abs() + (a.1 as i32 - b.1 as i32).abs() + (a.2 as i32 - b.2 as i32).abs();
                assert!(distance >= 60, "{a:?} and {b:?} are too alike");
            }
        }
    }

    fn figures() -> Vec<Figure> {
        let names = |n: usize| (0..n).map(|i| format!("class {i}")).collect::<Vec<_>>();
        vec![
            Figure::Line {
                chart: LineChart::new("loss"),
                series: vec![Series::new("train", vec![(1.0, 0.9), (2.0, 0.5)])],
            },
            Figure::Bars {
                title: "AUROC".into(),
                categories: names(3),
                groups: vec![BarGroup {
                    name: "a".into(),
                    values: vec![Some(0.5), None, Some(0.9)],
                }],
                range: (0.0, 1.0),
            },
            Figure::Confusion {
                title: "matrix".into(),
                classes: names(3),
                counts: vec![vec![5, 1, 0], vec![0, 3, 2], vec![1, 0, 4]],
                view: MatrixView::Recall,
            },
            Figure::LabelGrid {
                title: "grid".into(),
                panels: vec![LabelPanel {
                    label: "Effusion".into(),
                    counts: [[80, 7], [3, 10]],
                    threshold: Some(0.31),
                }],
            },
            Figure::Counts {
                title: "both".into(),
                labels: names(2),
                counts: vec![vec![4, 1], vec![1, 2]],
            },
            Figure::Probabilities {
                bars: vec![ProbabilityBar {
                    label: "Effusion".into(),
                    probability: 0.7,
                    threshold: 0.4,
                }],
            },
        ]
    }

    #[test]
    fn every_figure_draws_as_svg_and_as_a_png_of_the_scaled_size() {
        for figure in figures() {
            let svg = figure.svg().unwrap();
            assert!(svg.starts_with("<svg"), "{svg}");
            let (w, h) = figure.size();
            for scale in [1, 2] {
                let png = figure.render(Format::Png, scale).unwrap();
                let decoded = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
                assert_eq!((decoded.width(), decoded.height()), (w * scale, h * scale));
                // Text and marks were drawn: not a blank white canvas.
                let dark = decoded
                    .to_rgb8()
                    .pixels()
                    .filter(|p| p.0.iter().all(|&c| c < 100))
                    .count();
                assert!(dark > 50, "{figure:?} at {scale}×: {dark} dark pixels");
            }
        }
    }

    #[test]
    fn a_matrix_is_as_wide_as_its_title() {
        let title = "Confusion matrix, row-normalised (validation, epoch 12)".to_string();
        let figure = Figure::Confusion {
            title: title.clone(),
            classes: vec!["a".into(), "b".into()],
            counts: vec![vec![1, 0], vec![0, 1]],
            view: MatrixView::Recall,
        };
        assert!(figure.size().0 as i32 > text_width(&title, TITLE) + 20);
    }

    #[test]
    fn no_text_on_any_chart_is_smaller_than_11_px() {
        for figure in figures() {
            let svg = figure.svg().unwrap();
            let sizes = font_sizes(&svg);
            assert!(!sizes.is_empty(), "{svg}");
            let smallest = sizes.iter().copied().fold(f64::MAX, f64::min);
            assert!(smallest >= 11.0, "{figure:?}: text at {smallest} px");
        }
    }

    #[test]
    fn the_digest_follows_the_data_not_the_format() {
        let [a, b] = [0.5, 0.6].map(|y| Figure::Line {
            chart: LineChart::new("loss"),
            series: vec![Series::new("train", vec![(1.0, 0.9), (2.0, y)])],
        });
        assert_eq!(a.digest(), a.clone().digest());
        assert_ne!(a.digest(), b.digest(), "one point differs");
        assert_eq!(a.digest().len(), 64);
    }

    #[test]
    fn csv_lists_every_point_and_neutralises_formulas() {
        let figure = Figure::Line {
            chart: LineChart::new("loss"),
            series: vec![
                Series::new("=HYPERLINK(\"x\")", vec![(1.0, 0.9)]),
                Series::new("b, c", vec![(1.0, 0.8), (2.0, 0.7)]),
            ],
        };
        let csv = String::from_utf8(figure.render(Format::Csv, 1).unwrap()).unwrap();
        assert_eq!(
            csv,
            "series,epoch,y\n\"'=HYPERLINK(\"\"x\"\")\",1,0.9\n\"b, c\",1,0.8\n\"b, c\",2,0.7\n"
        );
        assert_eq!(csv_cell("-0.5"), "-0.5", "negative numbers stay numbers");
    }

    #[test]
    fn chart_files_name_their_format() {
        assert_eq!(Format::of_file("loss.png"), Some(("loss", Format::Png)));
        assert_eq!(
            Format::of_file("per_label_auroc.svg"),
            Some(("per_label_auroc", Format::Svg))
        );
        assert_eq!(Format::of_file("loss.csv"), Some(("loss", Format::Csv)));
        assert_eq!(Format::of_file("loss.gif"), None);
        assert_eq!(Format::of_file(".png"), None);
        assert_eq!(Format::of_file("loss"), None);
    }

    #[test]
    fn numbers_format_briefly() {
        assert_eq!(format_number(0.5), "0.5");
        assert_eq!(format_number(12.0), "12");
        assert_eq!(format_number(0.0001), "1.0e-4");
        assert_eq!(format_number(0.123456), "0.123");
        assert_eq!(format_number(5.6e-17), "0", "rounding noise of a 0 tick");
        assert_eq!(format_number(1e-9), "1.0e-9", "a tiny learning rate is still a number");
    }

    #[test]
    fn texts_are_read_back() {
        let svg = Figure::Counts {
            title: "t".into(),
            labels: vec!["a".into()],
            counts: vec![vec![3]],
        }
        .svg()
        .unwrap();
        assert!(texts(&svg).contains(&"3"));
    }
}
