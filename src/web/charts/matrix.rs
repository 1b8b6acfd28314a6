//! Matrices: a single-label run's N×N confusion matrix (counts or row-normalised), a multi-label
//! run's per-label 2×2s as one grid (small multiples), and a symmetric count heatmap (label
//! co-occurrence).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;
use serde::Serialize;

use super::{draw_error, draw_title, text_width, Error, Scale, NOTE_GREY, TEXT};

/// What the cells of a confusion matrix say. Cells are shaded by their share of the actual class
/// (the row) in both views, so a rare class's row is as readable as a common one's and the
/// diagonal reads as per-class recall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatrixView {
    /// Image counts, as `cxr8 eval` prints them.
    Counts,
    /// Per cent of the row (recall on the diagonal).
    Recall,
}

impl MatrixView {
    /// The `view=` value naming this view.
    pub fn name(self) -> &'static str {
        match self {
            MatrixView::Counts => "counts",
            MatrixView::Recall => "recall",
        }
    }

    /// The view a page's switch offers instead of this one.
    pub fn other(self) -> MatrixView {
        match self {
            MatrixView::Counts => MatrixView::Recall,
            MatrixView::Recall => MatrixView::Counts,
        }
    }

    pub fn parse(text: &str) -> Option<MatrixView> {
        match text {
            "counts" => Some(MatrixView::Counts),
            "recall" => Some(MatrixView::Recall),
            _ => None,
        }
    }
}

/// One label's 2×2 in a grid: `counts` is `[[tn, fp], [fn, tp]]` (rows actual negative/positive,
/// columns predicted negative/positive) at `threshold`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelPanel {
    pub label: String,
    pub counts: [[u64; 2]; 2],
    pub threshold: Option<f32>,
}

/// Where a figure's parts go, in pixels at scale 1.
pub(super) struct Layout {
    width: u32,
    height: u32,
}

impl Layout {
    pub(super) fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

/// A white-to-blue shade for `share` in 0..=1 (the palette's blue at 1), and the ink that reads
/// on it.
fn shade(share: f64) -> (RGBColor, RGBColor) {
    let share = share.clamp(0.0, 1.0);
    let channel = |full: u8| (255.0 - share * (255.0 - full as f64)).round() as u8;
    let ink = if share > 0.55 { WHITE } else { BLACK };
    (RGBColor(channel(0), channel(114), channel(178)), ink)
}

/// One square cell at `(x, y)`: shaded by `share`, framed in white, `text` centred in the ink that
/// reads on the shade (or `ink` when given).
fn draw_cell<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    k: Scale,
    (x, y): (i32, i32),
    cell: i32,
    share: f64,
    text: String,
    ink: Option<RGBColor>,
) -> Result<(), Error> {
    let (fill, readable) = shade(share);
    let rect = [(x, y), (x + cell, y + cell)];
    root.draw(&Rectangle::new(rect, fill.filled())).map_err(draw_error)?;
    root.draw(&Rectangle::new(rect, WHITE.stroke_width(k.upx(1))))
        .map_err(draw_error)?;
    root.draw(&Text::new(
        text,
        (x + cell / 2, y + cell / 2),
        k.text(TEXT)
            .color(&ink.unwrap_or(readable))
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(draw_error)?;
    Ok(())
}

const TOP: i32 = 44;

/// The confusion matrix's cell size: large for a 2×2, still holding five digits at 20 classes.
fn confusion_cell(n: usize) -> i32 {
    match n {
        0..=2 => 64,
        3..=6 => 52,
        7..=12 => 48,
        _ => 44,
    }
}

/// The confusion matrix's measures: (left edge of the grid, cell, width of the support column,
/// height of the rotated column names).
fn confusion_measures(classes: &[String]) -> (i32, i32, i32, i32) {
    let names = classes.iter().map(|c| text_width(c, TEXT)).max().unwrap_or(0);
    let left = 30 + names.max(40) + 10;
    let support = text_width("images", TEXT) + 14;
    (left, confusion_cell(classes.len()), support, names + 14)
}

pub(super) fn confusion_layout(classes: &[String]) -> Layout {
    let (left, cell, support, column_names) = confusion_measures(classes);
    let grid = cell * classes.len() as i32;
    Layout {
        width: (left + grid + support + 10).max(320) as u32,
        height: (TOP + grid + column_names + 52) as u32,
    }
}

pub(super) fn draw_confusion<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    k: Scale,
    title: &str,
    classes: &[String],
    counts: &[Vec<u64>],
    view: MatrixView,
) -> Result<(), Error> {
    let n = classes.len();
    let (left, cell, _, column_names) = confusion_measures(classes);
    let (left, cell, top) = (k.px(left), k.px(cell), k.px(TOP));
    let grid = cell * n as i32;
    let centered = Pos::new(HPos::Center, VPos::Center);
    draw_title(root, k, title)?;
    let note = |text: &str, at: (i32, i32), pos: Pos, rotate: bool| {
        let mut font = k.text(TEXT);
        if rotate {
            font = font.transform(FontTransform::Rotate270);
        }
        root.draw(&Text::new(text.to_string(), at, font.color(&NOTE_GREY).pos(pos)))
            .map_err(draw_error)
    };
    note("actual", (k.px(12), top + grid / 2), centered, true)?;
    note(
        "images",
        (left + grid + k.px(8), top - k.px(10)),
        Pos::new(HPos::Left, VPos::Center),
        false,
    )?;
    for (row, actual) in classes.iter().enumerate() {
        let y = top + cell * row as i32;
        let row_counts = counts.get(row).map(Vec::as_slice).unwrap_or(&[]);
        let total: u64 = row_counts.iter().sum();
        root.draw(&Text::new(
            actual.clone(),
            (left - k.px(6), y + cell / 2),
            k.text(TEXT)
                .into_text_style(root)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(draw_error)?;
        for col in 0..n {
            let x = left + cell * col as i32;
            let count = row_counts.get(col).copied().unwrap_or(0);
            let share = if total > 0 { count as f64 / total as f64 } else { 0.0 };
            let text = match view {
                MatrixView::Counts => count.to_string(),
                MatrixView::Recall if total == 0 => "–".into(),
                MatrixView::Recall if count > 0 && share < 0.005 => "<1".into(),
                MatrixView::Recall => format!("{:.0}", 100.0 * share),
            };
            // Zeros recede so the diagonal and the real confusions stand out at 20 classes.
            let ink = (count == 0).then_some(RGBColor(170, 170, 170));
            draw_cell(root, k, (x, y), cell, share, text, ink)?;
        }
        // The diagonal (correct predictions) is framed, so it can be followed across the grid.
        if row < n {
            let x = left + cell * row as i32;
            root.draw(&Rectangle::new(
                [(x + k.px(1), y + k.px(1)), (x + cell - k.px(1), y + cell - k.px(1))],
                RGBColor(40, 40, 40).stroke_width(k.upx(2)),
            ))
            .map_err(draw_error)?;
        }
        root.draw(&Text::new(
            total.to_string(),
            (left + grid + k.px(8), y + cell / 2),
            k.text(TEXT).color(&NOTE_GREY).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(draw_error)?;
    }
    // Class names under the columns, reading upwards, so 20 long names fit side by side.
    for (col, predicted) in classes.iter().enumerate() {
        root.draw(&Text::new(
            predicted.clone(),
            (left + cell * col as i32 + cell / 2, top + grid + k.px(6)),
            k.text(TEXT)
                .transform(FontTransform::Rotate270)
                .into_text_style(root)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(draw_error)?;
    }
    let below = top + grid + k.px(column_names);
    note("predicted", (left + grid / 2, below + k.px(10)), centered, false)?;
    let shading = match view {
        MatrixView::Counts => "counts; shade: share of the actual class",
        MatrixView::Recall => "per cent of each actual class (recall on the diagonal)",
    };
    note(shading, (left + grid / 2, below + k.px(32)), centered, false)?;
    Ok(())
}

/// Panels per row of a label grid.
fn grid_columns(panels: usize) -> usize {
    panels.clamp(1, 5)
}

const GRID_CELL: i32 = 40;
/// Room left of a panel's cells for "neg"/"pos".
const GRID_AXIS: i32 = 34;
/// A panel's height: label, threshold, column heads, two cells, gap.
const PANEL_HEIGHT: i32 = 40 + 18 + 2 * GRID_CELL + 16;

fn panel_width(panels: &[LabelPanel]) -> i32 {
    let widest = panels.iter().map(|p| text_width(&p.label, TEXT)).max().unwrap_or(0);
    widest.max(GRID_AXIS + 2 * GRID_CELL) + 20
}

pub(super) fn grid_layout(panels: &[LabelPanel]) -> Layout {
    let columns = grid_columns(panels.len()) as i32;
    let rows = panels.len().div_ceil(columns as usize).max(1) as i32;
    Layout {
        width: (20 + columns * panel_width(panels)).max(360) as u32,
        height: (TOP + rows * PANEL_HEIGHT + 30) as u32,
    }
}

pub(super) fn draw_grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    k: Scale,
    title: &str,
    panels: &[LabelPanel],
) -> Result<(), Error> {
    draw_title(root, k, title)?;
    let columns = grid_columns(panels.len());
    let width = k.px(panel_width(panels));
    let cell = k.px(GRID_CELL);
    let centered = Pos::new(HPos::Center, VPos::Center);
    let grey = |text: String, at: (i32, i32), pos: Pos| {
        root.draw(&Text::new(text, at, k.text(TEXT).color(&NOTE_GREY).pos(pos)))
            .map_err(draw_error)
    };
    for (i, panel) in panels.iter().enumerate() {
        let x = k.px(10) + width * (i % columns) as i32;
        let y = k.px(TOP) + k.px(PANEL_HEIGHT) * (i / columns) as i32;
        let cells_x = x + k.px(GRID_AXIS);
        let mid = cells_x + cell;
        root.draw(&Text::new(
            panel.label.clone(),
            (mid, y + k.px(8)),
            k.text(TEXT).into_text_style(root).pos(centered),
        ))
        .map_err(draw_error)?;
        let threshold = panel.threshold.map_or("at 0.5".to_string(), |t| format!("at {t:.3}"));
        grey(threshold, (mid, y + k.px(26)), centered)?;
        let cells_y = y + k.px(58);
        for (col, head) in ["neg", "pos"].iter().enumerate() {
            grey(
                head.to_string(),
                (cells_x + cell * col as i32 + cell / 2, cells_y - k.px(9)),
                centered,
            )?;
        }
        for (row, counts) in panel.counts.iter().enumerate() {
            let row_y = cells_y + cell * row as i32;
            grey(
                ["neg", "pos"][row].to_string(),
                (cells_x - k.px(4), row_y + cell / 2),
                Pos::new(HPos::Right, VPos::Center),
            )?;
            let total: u64 = counts.iter().sum();
            for (col, &count) in counts.iter().enumerate() {
                let cx = cells_x + cell * col as i32;
                let share = if total > 0 { count as f64 / total as f64 } else { 0.0 };
                draw_cell(root, k, (cx, row_y), cell, share, count.to_string(), None)?;
            }
        }
    }
    let (w, h) = root.dim_in_pixel();
    grey(
        "rows: actual, columns: predicted at each label's threshold; shade: share of the row".into(),
        (w as i32 / 2, h as i32 - k.px(16)),
        centered,
    )?;
    Ok(())
}

/// Count heatmap cells.
const COUNT_CELL: i32 = 48;
const COUNT_TOP: i32 = 60;

/// Rows carry a number before the label, and columns only the number, so long label names need
/// no rotated text.
fn numbered(labels: &[String]) -> Vec<String> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{} {l}", i + 1))
        .collect()
}

fn counts_left(labels: &[String]) -> i32 {
    let widest = numbered(labels).iter().map(|l| text_width(l, TEXT)).max().unwrap_or(0);
    (widest + 16).max(60)
}

pub(super) fn counts_layout(labels: &[String]) -> Layout {
    let n = labels.len() as i32;
    Layout {
        width: (counts_left(labels) + COUNT_CELL * n + 16).max(240) as u32,
        height: (COUNT_TOP + COUNT_CELL * n + 16) as u32,
    }
}

/// Draws a symmetric count matrix (`counts[i][j]` = images with both labels) with the count in
/// every cell, shaded by the square root of its share of the largest count, so rare pairs stay
/// visible next to thousands of single findings.
pub(super) fn draw_counts<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    k: Scale,
    title: &str,
    labels: &[String],
    counts: &[Vec<usize>],
) -> Result<(), Error> {
    let n = labels.len();
    let (left, cell, top) = (k.px(counts_left(labels)), k.px(COUNT_CELL), k.px(COUNT_TOP));
    let max = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let centered = Pos::new(HPos::Center, VPos::Center);
    draw_title(root, k, title)?;
    for col in 0..n {
        root.draw(&Text::new(
            (col + 1).to_string(),
            (left + cell * col as i32 + cell / 2, top - k.px(12)),
            k.text(TEXT).into_text_style(root).pos(centered),
        ))
        .map_err(draw_error)?;
    }
    for (row, name) in numbered(labels).into_iter().enumerate() {
        let y = top + cell * row as i32;
        root.draw(&Text::new(
            name,
            (left - k.px(6), y + cell / 2),
            k.text(TEXT)
                .into_text_style(root)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(draw_error)?;
        for col in 0..n {
            let x = left + cell * col as i32;
            let count = counts.get(row).and_then(|r| r.get(col)).copied().unwrap_or(0);
            let share = (count as f64 / max).sqrt();
            draw_cell(root, k, (x, y), cell, share, count.to_string(), None)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::svg_text::texts;
    use super::super::Figure;
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("Finding_{i:02}")).collect()
    }

    #[test]
    fn a_confusion_matrix_writes_every_count_and_names_both_axes() {
        let classes: Vec<String> = ["Atelectasis", "Effusion", "No Finding"].map(String::from).to_vec();
        let counts = vec![vec![12, 3, 0], vec![1, 30, 9], vec![4, 2, 140]];
        let figure = Figure::Confusion {
            title: "epoch 3".into(),
            classes: classes.clone(),
            counts: counts.clone(),
            view: MatrixView::Counts,
        };
        let svg = figure.svg().unwrap();
        let texts = texts(&svg);
        for count in counts.iter().flatten() {
            assert!(texts.contains(&count.to_string().as_str()), "{count} missing");
        }
        for class in &classes {
            let times = texts.iter().filter(|t| **t == class.as_str()).count();
            assert_eq!(times, 2, "{class} names a row and a column");
        }
        for row_total in ["15", "40", "146"] {
            assert!(texts.contains(&row_total), "row total {row_total}");
        }
        // Fill and border per cell, a frame per diagonal cell, plus the page.
        assert_eq!(svg.matches("<rect").count(), 1 + 2 * 9 + 3);
    }

    #[test]
    fn the_recall_view_writes_per_cent_of_each_row() {
        let svg = Figure::Confusion {
            title: "recall".into(),
            classes: names(3),
            counts: vec![vec![1, 999, 0], vec![0, 0, 0], vec![1, 1, 2]],
            view: MatrixView::Recall,
        }
        .svg()
        .unwrap();
        let texts = texts(&svg);
        for expected in ["&lt;1", "100", "25", "50", "–"] {
            assert!(texts.contains(&expected), "{expected} missing from {texts:?}");
        }
    }

    #[test]
    fn twenty_classes_fit_with_readable_cells() {
        let classes = names(20);
        let counts: Vec<Vec<u64>> = (0..20)
            .map(|r| (0..20).map(|c| if r == c { 12_345 } else { 7 }).collect())
            .collect();
        let cell = confusion_cell(20);
        let five = text_width("12345", TEXT);
        assert!(five + 4 <= cell, "five digits ({five} px) fit in a {cell}-px cell");
        let svg = Figure::Confusion {
            title: "20".into(),
            classes,
            counts,
            view: MatrixView::Counts,
        }
        .svg()
        .unwrap();
        assert_eq!(texts(&svg).iter().filter(|t| **t == "12345").count(), 20);
        let (w, _) = confusion_layout(&names(20)).size();
        assert!(w < 1300, "fits a laptop screen: {w} px");
    }

    #[test]
    fn a_label_grid_has_every_label_its_threshold_and_counts() {
        let panels: Vec<LabelPanel> = names(7)
            .into_iter()
            .enumerate()
            .map(|(i, label)| LabelPanel {
                label,
                counts: [[100 + i as u64, 7], [3, 20 + i as u64]],
                threshold: Some(0.25),
            })
            .collect();
        let svg = Figure::LabelGrid {
            title: "grid".into(),
            panels,
        }
        .svg()
        .unwrap();
        let texts = texts(&svg);
        for i in 0..7 {
            assert!(texts.contains(&format!("Finding_{i:02}").as_str()));
            assert!(texts.contains(&(100 + i).to_string().as_str()));
        }
        assert_eq!(texts.iter().filter(|t| **t == "at 0.250").count(), 7);
        // 5 panels per row: two rows for 7 labels.
        assert_eq!(
            grid_layout(&vec![
                LabelPanel {
                    label: "x".into(),
                    counts: [[0; 2]; 2],
                    threshold: None
                };
                7
            ])
            .size()
            .1,
            (TOP + 2 * PANEL_HEIGHT + 30) as u32
        );
    }

    #[test]
    fn count_heatmap_numbers_columns_and_writes_every_count() {
        let labels = vec!["Effusion".to_string(), "Pleural_Thickening".to_string()];
        let svg = Figure::Counts {
            title: "both".into(),
            labels,
            counts: vec![vec![13_317, 849], vec![849, 3_385]],
        }
        .svg()
        .unwrap();
        let texts = texts(&svg);
        for expected in [
            "both",
            "1",
            "2",
            "1 Effusion",
            "2 Pleural_Thickening",
            "13317",
            "849",
            "3385",
        ] {
            assert!(texts.contains(&expected), "{expected} missing from {texts:?}");
        }
        assert_eq!(texts.iter().filter(|t| **t == "849").count(), 2);
    }
}
