//! SVG charts drawn with plotters from plain `(x, y)` series: line charts (several series, legend,
//! EMA smoothing, log y, spike-preserving downsampling), confusion-matrix heatmaps and bar charts.
//! Knows nothing about runs, the store or Burn. Text goes into the SVG as `<text>` elements, so the
//! browser lays out the glyphs and no font files are needed.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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

/// One named line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
        }
    }
}

/// What a line chart's x values are, which decides its ticks: epochs (about one tick each),
/// global steps (whole numbers, 12k for 12,000) or training time (already in the label's unit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XAxis {
    #[default]
    Epoch,
    Step,
    Time,
}

/// How to draw a line chart.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_axis: XAxis,
    pub x_label: String,
    pub y_label: String,
    /// EMA smoothing weight in `[0, 1)`; the raw line is then drawn faintly underneath.
    pub smoothing: Option<f64>,
    pub log_y: bool,
    pub size: (u32, u32),
    /// Longer series are reduced to about this many points (min and max per bucket).
    pub max_points: usize,
}

impl LineChart {
    pub fn new(title: impl Into<String>) -> LineChart {
        LineChart {
            title: title.into(),
            x_axis: XAxis::Epoch,
            x_label: "epoch".into(),
            y_label: String::new(),
            smoothing: None,
            log_y: false,
            size: (560, 320),
            max_points: 1000,
        }
    }
}

/// Exponential moving average with the start-up bias removed: the running average starts at 0, so
/// after `t` points it carries a total weight of `1 - w^t`; dividing by that makes the first
/// smoothed value equal the first raw value instead of being pulled towards 0.
pub fn ema_debiased(points: &[(f64, f64)], weight: f64) -> Vec<(f64, f64)> {
    let weight = weight.clamp(0.0, 0.999);
    let mut average = 0.0;
    let mut total_weight = 1.0;
    points
        .iter()
        .filter(|(_, y)| y.is_finite())
        .map(|&(x, y)| {
            average = weight * average + (1.0 - weight) * y;
            total_weight *= weight;
            (x, average / (1.0 - total_weight))
        })
        .collect()
}

/// Reduces a long series to at most `max_points` by keeping the lowest and highest point of each
/// bucket (in x order), so a single spike still shows; shorter series come back unchanged.
pub fn downsample_min_max(points: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    let max_points = max_points.max(2);
    if points.len() <= max_points {
        return points.to_vec();
    }
    let buckets = max_points / 2;
    let bucket_len = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(max_points);
    for bucket in points.chunks(bucket_len) {
        let finite = || bucket.iter().enumerate().filter(|(_, p)| p.1.is_finite());
        let low = finite().min_by(|a, b| a.1 .1.total_cmp(&b.1 .1));
        let high = finite().max_by(|a, b| a.1 .1.total_cmp(&b.1 .1));
        match (low, high) {
            (Some((i, &lo)), Some((j, _))) if i == j => out.push(lo),
            (Some((i, &lo)), Some((j, &hi))) => {
                if i < j {
                    out.extend([lo, hi]);
                } else {
                    out.extend([hi, lo]);
                }
            }
            _ => {}
        }
    }
    out
}

/// (x, y) pairs of one line.
type Points = Vec<(f64, f64)>;

/// Draws a line chart as an SVG document. Non-finite values (a NaN loss) and, on a log axis,
/// values ≤ 0 are left out rather than breaking the scale.
pub fn line_chart(chart: &LineChart, series: &[Series]) -> Result<String, Error> {
    let transform = |y: f64| if chart.log_y { y.log10() } else { y };
    let keep = |&(_, y): &(f64, f64)| y.is_finite() && (!chart.log_y || y > 0.0);
    // Per series: (faint raw line if smoothing, main line), both in plotting coordinates.
    let prepared: Vec<(Option<Points>, Points)> = series
        .iter()
        .map(|s| {
            let clean: Vec<(f64, f64)> = s.points.iter().copied().filter(keep).collect();
            let raw = downsample_min_max(&clean, chart.max_points);
            let raw: Vec<(f64, f64)> = raw.into_iter().map(|(x, y)| (x, transform(y))).collect();
            match chart.smoothing.filter(|w| *w > 0.0) {
                Some(weight) => {
                    let smooth = ema_debiased(&clean, weight);
                    let smooth = downsample_min_max(&smooth, chart.max_points);
                    let smooth = smooth.into_iter().map(|(x, y)| (x, transform(y))).collect();
                    (Some(raw), smooth)
                }
                None => (None, raw),
            }
        })
        .collect();

    let all = prepared.iter().flat_map(|(raw, main)| raw.iter().flatten().chain(main));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, chart.size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        if x0 > x1 {
            draw_empty(&root, &chart.title)?;
            root.present().map_err(draw_error)?;
            drop(root);
            return Ok(svg);
        }
        let (x0, x1) = pad_range(x0, x1, 0.0);
        let (y0, y1) = pad_range(y0, y1, 0.05);
        let mut ctx = ChartBuilder::on(&root)
            .caption(&chart.title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(58)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_error)?;
        let log_y = chart.log_y;
        let y_format = move |v: &f64| {
            if log_y {
                format_number(10f64.powf(*v))
            } else {
                format_number(*v)
            }
        };
        let x_axis = chart.x_axis;
        let x_format = move |v: &f64| match x_axis {
            XAxis::Step => format_count(*v),
            XAxis::Epoch | XAxis::Time => format_number(*v),
        };
        let x_ticks = match x_axis {
            // Epoch axes: about one tick per epoch for short runs rather than fractional epochs.
            XAxis::Epoch => ((x1 - x0).round() as usize + 1).clamp(2, 10),
            XAxis::Step | XAxis::Time => 8,
        };
        ctx.configure_mesh()
            .x_labels(x_ticks)
            .x_desc(chart.x_label.as_str())
            .y_desc(chart.y_label.as_str())
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(RGBColor(245, 245, 245))
            .max_light_lines(2)
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(draw_error)?;
        for (index, (raw, main)) in prepared.iter().enumerate() {
            let color = PALETTE[index % PALETTE.len()];
            if let Some(raw) = raw {
                ctx.draw_series(LineSeries::new(raw.iter().copied(), color.mix(0.25).stroke_width(1)))
                    .map_err(draw_error)?;
            }
            let drawn = if main.len() == 1 {
                ctx.draw_series(main.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(draw_error)?
            } else {
                ctx.draw_series(LineSeries::new(main.iter().copied(), color.stroke_width(2)))
                    .map_err(draw_error)?
            };
            drawn
                .label(series[index].name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        if !series.is_empty() {
            ctx.configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Draws a confusion matrix (`counts[actual][predicted]`) with the count in every cell; cells are
/// shaded by their share of the largest count.
pub fn confusion_heatmap(title: &str, labels: &[String], counts: &[Vec<u64>]) -> Result<String, Error> {
    let n = labels.len();
    let cell = if n <= 2 { 64 } else { 40 };
    let label_space = 8 * labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as i32 + 16;
    let left = label_space.max(70) + 18;
    let top = 40;
    let width = (left + cell * n as i32 + 16) as u32;
    let height = (top + cell * n as i32 + 60) as u32;
    let max = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let centered = Pos::new(HPos::Center, VPos::Center);
        root.draw(&Text::new(
            title.to_string(),
            (width as i32 / 2, 16),
            ("sans-serif", 14).into_font().into_text_style(&root).pos(centered),
        ))
        .map_err(draw_error)?;
        for (row, actual) in labels.iter().enumerate() {
            let y = top + cell * row as i32;
            let right_aligned = Pos::new(HPos::Right, VPos::Center);
            root.draw(&Text::new(
                actual.clone(),
                (left - 6, y + cell / 2),
                ("sans-serif", 12).into_font().into_text_style(&root).pos(right_aligned),
            ))
            .map_err(draw_error)?;
            for col in 0..n {
                let x = left + cell * col as i32;
                let count = counts.get(row).and_then(|r| r.get(col)).copied().unwrap_or(0);
                let share = count as f64 / max;
                // From white to the palette's blue.
                let shade = |full: u8| (255.0 - share * (255.0 - full as f64)).round() as u8;
                let fill = RGBColor(shade(0), shade(114), shade(178));
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], fill.filled()))
                    .map_err(draw_error)?;
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], WHITE.stroke_width(1)))
                    .map_err(draw_error)?;
                let ink = if share > 0.55 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    count.to_string(),
                    (x + cell / 2, y + cell / 2),
                    ("sans-serif", 13).into_font().color(&ink).pos(centered),
                ))
                .map_err(draw_error)?;
            }
        }
        for (col, predicted) in labels.iter().enumerate() {
            root.draw(&Text::new(
                predicted.clone(),
                (left + cell * col as i32 + cell / 2, top + cell * n as i32 + 14),
                ("sans-serif", 12).into_font().into_text_style(&root).pos(centered),
            ))
            .map_err(draw_error)?;
        }
        root.draw(&Text::new(
            "predicted",
            (left + cell * n as i32 / 2, top + cell * n as i32 + 36),
            ("sans-serif", 12)
                .into_font()
                .color(&RGBColor(90, 90, 90))
                .pos(centered),
        ))
        .map_err(draw_error)?;
        root.draw(&Text::new(
            "actual",
            (4, top - 10),
            ("sans-serif", 12)
                .into_font()
                .color(&RGBColor(90, 90, 90))
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Draws a symmetric count matrix (label co-occurrence: `counts[i][j]` = images with both labels)
/// with the count in every cell. Columns are numbered and rows carry the same number before the
/// label, so long label names need no rotated text. Cells are shaded by the square root of their
/// share of the largest count, so rare pairs stay visible next to thousands of single findings.
pub fn count_heatmap(title: &str, labels: &[String], counts: &[Vec<usize>]) -> Result<String, Error> {
    let n = labels.len();
    let cell = 46;
    let row_names: Vec<String> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{} {l}", i + 1))
        .collect();
    let label_space = 7 * row_names.iter().map(|l| l.chars().count()).max().unwrap_or(0) as i32 + 16;
    let left = label_space.max(60);
    let top = 56;
    let width = (left + cell * n as i32 + 16).max(240) as u32;
    let height = (top + cell * n as i32 + 16) as u32;
    let max = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let centered = Pos::new(HPos::Center, VPos::Center);
        root.draw(&Text::new(
            title.to_string(),
            (width as i32 / 2, 16),
            ("sans-serif", 14).into_font().into_text_style(&root).pos(centered),
        ))
        .map_err(draw_error)?;
        for col in 0..n {
            root.draw(&Text::new(
                (col + 1).to_string(),
                (left + cell * col as i32 + cell / 2, top - 12),
                ("sans-serif", 12).into_font().into_text_style(&root).pos(centered),
            ))
            .map_err(draw_error)?;
        }
        for (row, name) in row_names.iter().enumerate() {
            let y = top + cell * row as i32;
            root.draw(&Text::new(
                name.clone(),
                (left - 6, y + cell / 2),
                ("sans-serif", 12)
                    .into_font()
                    .into_text_style(&root)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(draw_error)?;
            for col in 0..n {
                let x = left + cell * col as i32;
                let count = counts.get(row).and_then(|r| r.get(col)).copied().unwrap_or(0);
                let share = (count as f64 / max).sqrt();
                let shade = |full: u8| (255.0 - share * (255.0 - full as f64)).round() as u8;
                let fill = RGBColor(shade(0), shade(114), shade(178));
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], fill.filled()))
                    .map_err(draw_error)?;
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], WHITE.stroke_width(1)))
                    .map_err(draw_error)?;
                let ink = if share > 0.55 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    count.to_string(),
                    (x + cell / 2, y + cell / 2),
                    ("sans-serif", 11).into_font().color(&ink).pos(centered),
                ))
                .map_err(draw_error)?;
            }
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// One group of bars (e.g. one run) with a value per category; `None` leaves a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct BarGroup {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// Horizontal bars, one row per category and one bar per group within it, values in `range`.
pub fn bar_chart(title: &str, categories: &[String], groups: &[BarGroup], range: (f64, f64)) -> Result<String, Error> {
    let rows = categories.len().max(1);
    let row_height = 10 + 12 * groups.len().max(1) as u32;
    let label_space = 7 * categories.iter().map(|c| c.chars().count()).max().unwrap_or(0) as u32 + 16;
    let legend_height = if groups.len() > 1 { 22 * groups.len() as u32 } else { 0 };
    let size = (560, 70 + row_height * rows as u32 + legend_height);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let (plot, legend) = root.split_vertically(size.1 - legend_height);
        let mut ctx = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(label_space.max(40))
            .build_cartesian_2d(range.0..range.1, 0f64..rows as f64)
            .map_err(draw_error)?;
        ctx.configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_label_formatter(&|v: &f64| format_number(*v))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(RGBColor(245, 245, 245))
            .max_light_lines(2)
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(draw_error)?;
        let slot = 0.8 / groups.len().max(1) as f64;
        for (g, group) in groups.iter().enumerate() {
            let color = PALETTE[g % PALETTE.len()];
            let bars = group.values.iter().enumerate().filter_map(|(row, v)| {
                let v = (*v)?.clamp(range.0, range.1);
                // Row 0 at the top, like a table.
                let top = (rows - row) as f64 - 0.1 - slot * g as f64;
                Some(Rectangle::new([(range.0, top), (v, top - slot)], color.filled()))
            });
            ctx.draw_series(bars).map_err(draw_error)?;
            // A value that is undefined (a label with no positives in that run's split) is
            // written where its bar would be, so it is not mistaken for a missing run.
            for (row, _) in group.values.iter().enumerate().filter(|(_, v)| v.is_none()) {
                let middle = (rows - row) as f64 - 0.1 - slot * (g as f64 + 0.5);
                let (x, y) = ctx.backend_coord(&(range.0, middle));
                plot.draw(&Text::new(
                    "n/a",
                    (x + 4, y),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&color)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(draw_error)?;
            }
        }
        for (row, name) in categories.iter().enumerate() {
            let (x, y) = ctx.backend_coord(&(range.0, (rows - row) as f64 - 0.5));
            plot.draw(&Text::new(
                name.clone(),
                (x - 6, y),
                ("sans-serif", 11)
                    .into_font()
                    .into_text_style(&plot)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(draw_error)?;
        }
        if groups.len() > 1 {
            for (g, group) in groups.iter().enumerate() {
                let y = 8 + 22 * g as i32;
                let color = PALETTE[g % PALETTE.len()];
                legend
                    .draw(&Rectangle::new([(60, y), (74, y + 12)], color.filled()))
                    .map_err(draw_error)?;
                legend
                    .draw(&Text::new(
                        group.name.clone(),
                        (80, y + 6),
                        ("sans-serif", 12)
                            .into_font()
                            .into_text_style(&legend)
                            .pos(Pos::new(HPos::Left, VPos::Center)),
                    ))
                    .map_err(draw_error)?;
            }
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_empty(root: &DrawingArea<SVGBackend<'_>, Shift>, title: &str) -> Result<(), Error> {
    let (w, h) = root.dim_in_pixel();
    let centered = Pos::new(HPos::Center, VPos::Center);
    root.draw(&Text::new(
        title.to_string(),
        (w as i32 / 2, 16),
        ("sans-serif", 16).into_font().into_text_style(root).pos(centered),
    ))
    .map_err(draw_error)?;
    root.draw(&Text::new(
        "no data yet",
        (w as i32 / 2, h as i32 / 2),
        ("sans-serif", 13)
            .into_font()
            .color(&RGBColor(120, 120, 120))
            .pos(centered),
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

/// Step counts as short whole numbers: 950, 4900, 12k, 1.5M.
pub fn format_count(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        let text = format!("{:.1}", v / 1e6);
        format!("{}M", text.trim_end_matches(".0"))
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Short axis labels: 0.5, 12, 1.2e-4, 3.0e6.
pub fn format_number(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ticks_are_short_whole_numbers() {
        let cases = [
            (0.0, "0"),
            (950.0, "950"),
            (4_900.0, "4900"),
            (12_000.0, "12k"),
            (490_000.0, "490k"),
            (1_500_000.0, "1.5M"),
            (2_000_000.0, "2M"),
        ];
        for (value, text) in cases {
            assert_eq!(format_count(value), text, "{value}");
        }
    }

    #[test]
    fn ten_series_get_ten_distinct_colours_matching_the_stylesheet() {
        let css = include_str!("../../static/style.css");
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

    /// Polylines stroked in the palette colour of series `index` (axes and ticks are black).
    fn polylines(svg: &str, index: usize) -> usize {
        let stroke = format!("stroke=\"{}\"", palette_hex(index).to_uppercase());
        svg.lines()
            .filter(|l| l.starts_with("<polyline") && l.contains(&stroke))
            .count()
    }

    /// The texts of `<text>` elements (plotters writes the content on its own line).
    fn texts(svg: &str) -> Vec<&str> {
        let lines: Vec<&str> = svg.lines().collect();
        lines
            .windows(2)
            .filter(|w| w[0].starts_with("<text"))
            .map(|w| w[1].trim())
            .collect()
    }

    #[test]
    fn count_heatmap_numbers_columns_and_writes_every_count() {
        let labels = vec!["Effusion".to_string(), "Pleural_Thickening".to_string()];
        let svg = count_heatmap("both", &labels, &[vec![13_317, 849], vec![849, 3_385]]).unwrap();
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
        let empty = count_heatmap("none", &[], &[]).unwrap();
        assert!(empty.contains("<svg"));
    }

    #[test]
    fn debiased_ema_starts_at_the_first_value() {
        let smooth = ema_debiased(&[(1.0, 1.0), (2.0, 2.0), (3.0, f64::NAN), (4.0, 2.0)], 0.6);
        // t=1: 0.4*1 / (1-0.6) = 1; t=2: (0.6*0.4 + 0.4*2) / (1-0.36) = 1.04/0.64.
        assert!((smooth[0].1 - 1.0).abs() < 1e-12, "{smooth:?}");
        assert!((smooth[1].1 - 1.625).abs() < 1e-12, "{smooth:?}");
        assert_eq!(smooth.len(), 3, "NaN points are skipped, not smoothed into the average");
        // A weight of 0 is no smoothing at all.
        assert_eq!(ema_debiased(&[(0.0, 5.0), (1.0, 7.0)], 0.0), [(0.0, 5.0), (1.0, 7.0)]);
    }

    #[test]
    fn downsampling_keeps_a_single_spike() {
        let mut points: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, 1.0)).collect();
        points[6_789].1 = 50.0;
        points[1_234].1 = -3.0;
        let reduced = downsample_min_max(&points, 200);
        assert!(reduced.len() <= 200, "{} points", reduced.len());
        assert!(reduced.contains(&(6_789.0, 50.0)), "the spike survives");
        assert!(reduced.contains(&(1_234.0, -3.0)), "the dip survives");
        assert!(reduced.windows(2).all(|w| w[0].0 < w[1].0), "stays in x order");
        let short = vec![(0.0, 1.0), (1.0, 2.0)];
        assert_eq!(downsample_min_max(&short, 200), short);
    }

    #[test]
    fn a_line_chart_has_a_line_and_a_legend_entry_per_series() {
        let series = [
            Series::new("train loss", vec![(1.0, 0.9), (2.0, 0.7), (3.0, 0.6)]),
            Series::new("val loss", vec![(1.0, 1.0), (2.0, 0.8), (3.0, 0.75)]),
        ];
        let svg = line_chart(&LineChart::new("loss"), &series).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        let texts = texts(&svg);
        assert!(
            texts.contains(&"train loss") && texts.contains(&"val loss"),
            "legend names: {texts:?}"
        );
        // plotters draws each line as one polyline, and a short one per legend swatch.
        assert_eq!(
            (polylines(&svg, 0), polylines(&svg, 1), polylines(&svg, 2)),
            (2, 2, 0),
            "{svg}"
        );
        // Smoothing adds a faint raw line under each smoothed one.
        let mut smoothed = LineChart::new("loss");
        smoothed.smoothing = Some(0.6);
        let svg = line_chart(&smoothed, &series).unwrap();
        assert_eq!((polylines(&svg, 0), polylines(&svg, 1)), (3, 3));
    }

    #[test]
    fn log_axis_skips_non_positive_values_and_labels_in_data_units() {
        let mut chart = LineChart::new("lr");
        chart.log_y = true;
        let series = [Series::new(
            "lr",
            vec![(1.0, 1e-2), (2.0, 1e-3), (3.0, 0.0), (4.0, 1e-4)],
        )];
        let svg = line_chart(&chart, &series).unwrap();
        assert_eq!(polylines(&svg, 0), 2);
        let texts = texts(&svg);
        assert!(
            texts.contains(&"0.001") && !texts.contains(&"-3"),
            "ticks are values, not logs: {texts:?}"
        );
    }

    #[test]
    fn empty_and_single_point_charts_still_render() {
        let svg = line_chart(&LineChart::new("nothing"), &[]).unwrap();
        assert!(svg.contains("no data yet"));
        let svg = line_chart(&LineChart::new("one"), &[Series::new("a", vec![(1.0, 0.5)])]).unwrap();
        assert!(svg.contains("<circle"), "a lone point is drawn as a dot");
    }

    #[test]
    fn heatmap_writes_every_count() {
        let labels = vec!["negative".to_string(), "positive".to_string()];
        let svg = confusion_heatmap("Effusion", &labels, &[vec![812, 31], vec![17, 140]]).unwrap();
        let texts = texts(&svg);
        for text in ["812", "31", "17", "140", "Effusion", "predicted", "actual", "positive"] {
            assert!(texts.contains(&text), "{text} missing from {texts:?}");
        }
        let three: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let svg = confusion_heatmap("3 classes", &three, &[vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]).unwrap();
        assert_eq!(
            svg.matches("<rect").count() - 1,
            2 * 9,
            "fill and border per cell, plus the page"
        );
    }

    #[test]
    fn bar_chart_draws_a_bar_per_value_and_names_every_category() {
        let categories: Vec<String> = ["Atelectasis", "Hernia"].map(String::from).to_vec();
        let groups = [
            BarGroup {
                name: "run a".into(),
                values: vec![Some(0.8), Some(0.6)],
            },
            BarGroup {
                name: "run b".into(),
                values: vec![Some(0.7), None],
            },
        ];
        let svg = bar_chart("AUROC", &categories, &groups, (0.0, 1.0)).unwrap();
        for text in ["Atelectasis", "Hernia", "run a", "run b"] {
            assert!(svg.contains(text), "{text} missing");
        }
        let bars = |hex: String| {
            svg.to_uppercase()
                .matches(&format!("FILL=\"{}\"", hex.to_uppercase()))
                .count()
        };
        assert_eq!(bars(palette_hex(0)), 2 + 1, "two bars and a legend swatch");
        // A missing value draws no bar but an "n/a" in the run's colour where the bar would be.
        assert_eq!(bars(palette_hex(1)), 1 + 1 + 1, "one bar, a legend swatch and the n/a");
        assert_eq!(svg.matches("n/a").count(), 1, "{svg}");
    }

    #[test]
    fn numbers_format_briefly() {
        assert_eq!(format_number(0.5), "0.5");
        assert_eq!(format_number(12.0), "12");
        assert_eq!(format_number(0.0001), "1.0e-4");
        assert_eq!(format_number(0.123456), "0.123");
    }
}
