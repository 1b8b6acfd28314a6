//! Horizontal grouped bar charts: one row per category (label), one bar per group (run) within it.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use super::{draw_error, format_number, text_width, Error, Scale, PALETTE, TEXT, TITLE};

/// One group of bars (e.g. one run) with a value per category; `None` is written "n/a".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BarGroup {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

const WIDTH: u32 = 600;
const LEGEND_LINE: u32 = 22;

fn row_height(groups: &[BarGroup]) -> u32 {
    12 + 14 * groups.len().max(1) as u32
}

fn legend_height(groups: &[BarGroup]) -> u32 {
    if groups.len() > 1 {
        8 + LEGEND_LINE * groups.len() as u32
    } else {
        0
    }
}

pub(super) fn size(categories: &[String], groups: &[BarGroup]) -> (u32, u32) {
    let rows = categories.len().max(1) as u32;
    (WIDTH, 80 + row_height(groups) * rows + legend_height(groups))
}

pub(super) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    k: Scale,
    title: &str,
    categories: &[String],
    groups: &[BarGroup],
    range: (f64, f64),
) -> Result<(), Error> {
    let rows = categories.len().max(1);
    let (_, height) = root.dim_in_pixel();
    let label_space = categories.iter().map(|c| text_width(c, TEXT)).max().unwrap_or(0) + 16;
    let (plot, legend) = root.split_vertically(height - k.upx(legend_height(groups)));
    let mut ctx = ChartBuilder::on(&plot)
        .caption(title, k.text(TITLE))
        .margin(k.px(10))
        .x_label_area_size(k.px(30))
        .y_label_area_size(k.px(label_space.max(40)))
        .build_cartesian_2d(range.0..range.1, 0f64..rows as f64)
        .map_err(draw_error)?;
    ctx.configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_label_formatter(&|v: &f64| format_number(*v))
        .bold_line_style(RGBColor(225, 225, 225).stroke_width(k.upx(1)))
        .light_line_style(RGBColor(245, 245, 245).stroke_width(k.upx(1)))
        .axis_style(RGBColor(120, 120, 120).stroke_width(k.upx(1)))
        .max_light_lines(2)
        .label_style(k.text(TEXT))
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
        // A value that is undefined (a label with no positives in that run's split) is written
        // where its bar would be, so it is not mistaken for a missing run.
        for (row, _) in group.values.iter().enumerate().filter(|(_, v)| v.is_none()) {
            let middle = (rows - row) as f64 - 0.1 - slot * (g as f64 + 0.5);
            let (x, y) = ctx.backend_coord(&(range.0, middle));
            plot.draw(&Text::new(
                "n/a",
                (x + k.px(4), y),
                k.text(TEXT).color(&color).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(draw_error)?;
        }
    }
    for (row, name) in categories.iter().enumerate() {
        let (x, y) = ctx.backend_coord(&(range.0, (rows - row) as f64 - 0.5));
        plot.draw(&Text::new(
            name.clone(),
            (x - k.px(6), y),
            k.text(TEXT)
                .into_text_style(&plot)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(draw_error)?;
    }
    if groups.len() > 1 {
        for (g, group) in groups.iter().enumerate() {
            let y = k.px(8 + (LEGEND_LINE * g as u32) as i32);
            let color = PALETTE[g % PALETTE.len()];
            legend
                .draw(&Rectangle::new(
                    [(k.px(60), y), (k.px(74), y + k.px(12))],
                    color.filled(),
                ))
                .map_err(draw_error)?;
            legend
                .draw(&Text::new(
                    group.name.clone(),
                    (k.px(80), y + k.px(6)),
                    k.text(TEXT)
                        .into_text_style(&legend)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(draw_error)?;
        }
    }
    Ok(())
}

/// One label's probability against its tuned threshold (the Predict and validation-image views).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbabilityBar {
    pub label: String,
    pub probability: f64,
    pub threshold: f64,
}

/// The probability bars' columns: labels, then the bar, then the value.
const BAR_LEFT_MIN: i32 = 60;
const BAR_LENGTH: i32 = 140;
const PROBABILITY_ROW: i32 = 24;
/// Over the threshold (predicted positive) and under it.
const POSITIVE: RGBColor = RGBColor(192, 57, 43);
const NEGATIVE: RGBColor = RGBColor(74, 122, 181);
const TICK: RGBColor = RGBColor(34, 34, 34);

fn bar_left(bars: &[ProbabilityBar]) -> i32 {
    bars.iter()
        .map(|b| text_width(&b.label, TEXT))
        .max()
        .unwrap_or(0)
        .max(BAR_LEFT_MIN)
        + 10
}

pub(super) fn probabilities_size(bars: &[ProbabilityBar]) -> (u32, u32) {
    let width = bar_left(bars) + BAR_LENGTH + 10 + text_width("0.000", TEXT) + 8;
    (width as u32, (PROBABILITY_ROW * bars.len().max(1) as i32 + 6) as u32)
}

/// A row per label: the bar is the probability (red when it reaches the threshold), the dark
/// tick the threshold, the number the probability.
pub(super) fn draw_probabilities<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    k: Scale,
    bars: &[ProbabilityBar],
) -> Result<(), Error> {
    let left = k.px(bar_left(bars));
    let length = k.px(BAR_LENGTH);
    for (i, bar) in bars.iter().enumerate() {
        let top = k.px(4 + PROBABILITY_ROW * i as i32);
        let (bottom, middle) = (top + k.px(16), top + k.px(8));
        let at = |value: f64| left + (length as f64 * value.clamp(0.0, 1.0)).round() as i32;
        root.draw(&Text::new(
            bar.label.clone(),
            (left - k.px(6), middle),
            k.text(TEXT)
                .into_text_style(root)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(draw_error)?;
        root.draw(&Rectangle::new(
            [(left, top), (left + length, bottom)],
            RGBColor(238, 238, 238).filled(),
        ))
        .map_err(draw_error)?;
        let colour = if bar.probability >= bar.threshold {
            POSITIVE
        } else {
            NEGATIVE
        };
        root.draw(&Rectangle::new(
            [(left, top), (at(bar.probability), bottom)],
            colour.filled(),
        ))
        .map_err(draw_error)?;
        let tick = at(bar.threshold);
        root.draw(&PathElement::new(
            vec![(tick, top - k.px(3)), (tick, bottom + k.px(3))],
            TICK.stroke_width(k.upx(2)),
        ))
        .map_err(draw_error)?;
        root.draw(&Text::new(
            format!("{:.3}", bar.probability),
            (left + length + k.px(8), middle),
            k.text(TEXT)
                .into_text_style(root)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(draw_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{palette_hex, Figure, Format};
    use super::*;

    #[test]
    fn probability_bars_are_red_from_their_threshold_and_mark_it() {
        let bars = vec![
            ProbabilityBar {
                label: "<b>&".into(),
                probability: 0.9,
                threshold: 0.5,
            },
            ProbabilityBar {
                label: "Mass".into(),
                probability: 0.1,
                threshold: 0.25,
            },
        ];
        let figure = Figure::Probabilities { bars };
        let svg = figure.svg().unwrap();
        assert!(svg.contains("&lt;b&gt;&amp;") && !svg.contains("<b>"), "labels escaped");
        let fill = |c: RGBColor| format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
        assert_eq!(svg.matches(&fill(POSITIVE)).count(), 1, "0.9 reaches 0.5");
        assert_eq!(svg.matches(&fill(NEGATIVE)).count(), 1, "0.1 does not reach 0.25");
        let ticks = svg
            .lines()
            .filter(|l| l.starts_with("<polyline") && l.contains("#222222"))
            .count();
        assert_eq!(ticks, 2, "a threshold tick per label");
        let csv = String::from_utf8(figure.render(Format::Csv, 1).unwrap()).unwrap();
        assert_eq!(csv, "label,probability,threshold\n<b>&,0.9,0.5\nMass,0.1,0.25\n");
    }

    #[test]
    fn bar_chart_draws_a_bar_per_value_and_names_every_category() {
        let categories: Vec<String> = ["Atelectasis", "Hernia"].map(String::from).to_vec();
        let groups = vec![
            BarGroup {
                name: "run a".into(),
                values: vec![Some(0.8), Some(0.6)],
            },
            BarGroup {
                name: "run b".into(),
                values: vec![Some(0.7), None],
            },
        ];
        let svg = Figure::Bars {
            title: "AUROC".into(),
            categories,
            groups,
            range: (0.0, 1.0),
        }
        .svg()
        .unwrap();
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
}
