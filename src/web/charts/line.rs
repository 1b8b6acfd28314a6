//! Line charts: several named series, a legend, EMA smoothing, a log y axis, spike-preserving
//! downsampling, point markers while a series is short, and headroom around the data.

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use super::{draw_empty, draw_error, format_number, pad_range, text_width, Error, Scale, PALETTE, TEXT, TITLE};

/// A series with at most this many points gets a marker on each: a two-epoch run is two dots and a
/// segment, not a bare line that could be anything.
const MARKERS_UP_TO: usize = 40;

/// One named line.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XAxis {
    #[default]
    Epoch,
    Step,
    Time,
}

/// How to draw a line chart.
#[derive(Debug, Clone, Serialize)]
pub struct LineChart {
    pub title: String,
    pub x_axis: XAxis,
    pub x_label: String,
    pub y_label: String,
    /// EMA smoothing weight in `[0, 1)`; the raw line is then drawn faintly underneath.
    pub smoothing: Option<f64>,
    pub log_y: bool,
    /// The range the values can take (e.g. 0–1 for an accuracy or an AUROC): the y-axis never
    /// extends more than a sliver beyond it, so a flat line at 0 does not show negative accuracy.
    pub y_within: Option<(f64, f64)>,
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
            y_within: None,
            size: (560, 340),
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

/// (x, y) pairs of one line.
type Points = Vec<(f64, f64)>;

/// Per series: the faint raw line when smoothing, and the main line, both in plotting
/// coordinates. Non-finite values (a NaN loss) and, on a log axis, values ≤ 0 are left out rather
/// than breaking the scale.
fn prepare(chart: &LineChart, series: &[Series]) -> Vec<(Option<Points>, Points)> {
    let transform = |y: f64| if chart.log_y { y.log10() } else { y };
    let keep = |&(_, y): &(f64, f64)| y.is_finite() && (!chart.log_y || y > 0.0);
    series
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
        .collect()
}

/// The x range, the y range and the number of x ticks of a line chart.
type PlotRanges = ((f64, f64), (f64, f64), usize);

/// The axes' ranges around the prepared points and the number of x ticks; `None` when there is
/// no point. Headroom: no point sits on the frame, and the top leaves room for the legend box.
fn plot_ranges(
    prepared: &[(Option<Points>, Points)],
    x_axis: XAxis,
    y_within: Option<(f64, f64)>,
) -> Option<PlotRanges> {
    let all = prepared.iter().flat_map(|(raw, main)| raw.iter().flatten().chain(main));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return None;
    }
    let x_ticks = match x_axis {
        // Epoch axes: about one tick per epoch for short runs rather than fractional epochs.
        XAxis::Epoch => ((x1 - x0).round() as usize + 1).clamp(2, 10),
        XAxis::Step | XAxis::Time => 8,
    };
    let (lo, hi) = pad_range(y0, y1, 0.06);
    let (mut lo, mut hi) = (lo, hi + (hi - lo) * 0.12);
    if let Some((min, max)) = y_within {
        // A sliver beyond the bounds keeps a point at 0 or 1 off the frame.
        let sliver = 0.04 * (max - min);
        lo = lo.max(min - sliver);
        hi = hi.min(max + sliver);
    }
    Some((pad_range(x0, x1, 0.03), (lo, hi), x_ticks))
}

pub(super) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    k: Scale,
    chart: &LineChart,
    series: &[Series],
) -> Result<(), Error> {
    let prepared = prepare(chart, series);
    let Some(((x0, x1), (y0, y1), x_ticks)) =
        plot_ranges(&prepared, chart.x_axis, chart.y_within.filter(|_| !chart.log_y))
    else {
        return draw_empty(root, k, &chart.title);
    };
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
    // Room for the widest y tick label, measured in the font the PNG draws with.
    let y_label_width = [y0, y1, (y0 + y1) / 2.0]
        .iter()
        .map(|v| text_width(&y_format(v), TEXT))
        .max()
        .unwrap_or(30);
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, k.text(TITLE))
        .margin(k.px(10))
        .x_label_area_size(k.px(40))
        .y_label_area_size(k.px(y_label_width + 34))
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_error)?;
    ctx.configure_mesh()
        .x_labels(x_ticks)
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .bold_line_style(RGBColor(225, 225, 225).stroke_width(k.upx(1)))
        .light_line_style(RGBColor(245, 245, 245).stroke_width(k.upx(1)))
        .axis_style(RGBColor(120, 120, 120).stroke_width(k.upx(1)))
        .max_light_lines(2)
        .label_style(k.text(TEXT))
        .axis_desc_style(k.text(TEXT))
        .draw()
        .map_err(draw_error)?;
    for (index, (raw, main)) in prepared.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        if let Some(raw) = raw {
            ctx.draw_series(LineSeries::new(
                raw.iter().copied(),
                color.mix(0.25).stroke_width(k.upx(1)),
            ))
            .map_err(draw_error)?;
        }
        let drawn = ctx
            .draw_series(LineSeries::new(main.iter().copied(), color.stroke_width(k.upx(2))))
            .map_err(draw_error)?;
        drawn
            .label(series[index].name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + k.px(16), y)], color.stroke_width(k.upx(2))));
        if main.len() <= MARKERS_UP_TO {
            ctx.draw_series(main.iter().map(|&p| Circle::new(p, k.px(3), color.filled())))
                .map_err(draw_error)?;
        }
    }
    if !series.is_empty() {
        ctx.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(k.text(TEXT))
            .margin(k.px(6))
            .legend_area_size(k.px(22))
            .draw()
            .map_err(draw_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::svg_text::texts;
    use super::super::{palette_hex, Figure};
    use super::*;

    fn svg(chart: &LineChart, series: &[Series]) -> String {
        Figure::Line {
            chart: chart.clone(),
            series: series.to_vec(),
        }
        .svg()
        .unwrap()
    }

    /// Polylines stroked in the palette colour of series `index` (axes and ticks are grey).
    fn polylines(svg: &str, index: usize) -> usize {
        let stroke = format!("stroke=\"{}\"", palette_hex(index).to_uppercase());
        svg.lines()
            .filter(|l| l.starts_with("<polyline") && l.contains(&stroke))
            .count()
    }

    /// Markers (filled circles) in the palette colour of series `index`.
    fn markers(svg: &str, index: usize) -> usize {
        let fill = format!("fill=\"{}\"", palette_hex(index).to_uppercase());
        svg.lines()
            .filter(|l| l.starts_with("<circle") && l.contains(&fill))
            .count()
    }

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
        let svg = svg(&LineChart::new("loss"), &series);
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
        let svg = super::tests::svg(&smoothed, &series);
        assert_eq!((polylines(&svg, 0), polylines(&svg, 1)), (3, 3));
    }

    #[test]
    fn short_series_get_a_marker_per_point_and_long_ones_none() {
        let short = [Series::new("train", vec![(1.0, 0.9), (2.0, 0.7)])];
        assert_eq!(markers(&svg(&LineChart::new("loss"), &short), 0), 2, "a 2-epoch run");
        let long: Vec<(f64, f64)> = (0..200).map(|i| (i as f64, 1.0 / (1.0 + i as f64))).collect();
        assert_eq!(markers(&svg(&LineChart::new("loss"), &[Series::new("s", long)]), 0), 0);
    }

    #[test]
    fn no_point_touches_the_plot_frame() {
        let series = [
            Series::new("train", vec![(1.0, 0.2), (2.0, 0.9), (3.0, 0.4)]),
            Series::new("flat", vec![(1.0, 0.5), (3.0, 0.5)]),
        ];
        let prepared = prepare(&LineChart::new("loss"), &series);
        let ((x0, x1), (y0, y1), ticks) = plot_ranges(&prepared, XAxis::Epoch, None).unwrap();
        assert_eq!(ticks, 3, "one tick per epoch");
        let (dx, dy) = (x1 - x0, y1 - y0);
        for (x, y) in prepared.iter().flat_map(|(_, main)| main.iter().copied()) {
            assert!(x - x0 >= 0.02 * dx && x1 - x >= 0.02 * dx, "x {x} in {x0}..{x1}");
            assert!(y - y0 >= 0.04 * dy, "y {y} near the bottom of {y0}..{y1}");
            assert!(y1 - y >= 0.12 * dy, "y {y} leaves no room for the legend under {y1}");
        }
        let one = prepare(&LineChart::new("one"), &[Series::new("a", vec![(4.0, 0.5)])]);
        let ((x0, x1), (y0, y1), _) = plot_ranges(&one, XAxis::Epoch, None).unwrap();
        assert!(
            x0 < 4.0 && 4.0 < x1 && y0 < 0.5 && 0.5 < y1,
            "a lone point is inside too"
        );
        assert!(plot_ranges(&[], XAxis::Epoch, None).is_none());
        // An accuracy stuck at 0 stays on a 0–1 scale's bottom, not centred on a negative range.
        let zero = prepare(
            &LineChart::new("acc"),
            &[Series::new("a", vec![(1.0, 0.0), (2.0, 0.0)])],
        );
        let (_, (y0, y1), _) = plot_ranges(&zero, XAxis::Epoch, Some((0.0, 1.0))).unwrap();
        assert!((-0.05..0.0).contains(&y0) && y1 > 0.0 && y1 <= 1.04, "{y0}..{y1}");
    }

    #[test]
    fn log_axis_skips_non_positive_values_and_labels_in_data_units() {
        let mut chart = LineChart::new("lr");
        chart.log_y = true;
        let series = [Series::new(
            "lr",
            vec![(1.0, 1e-2), (2.0, 1e-3), (3.0, 0.0), (4.0, 1e-4)],
        )];
        let svg = svg(&chart, &series);
        assert_eq!(polylines(&svg, 0), 2);
        let texts = texts(&svg);
        assert!(
            texts.contains(&"0.001") && !texts.contains(&"-3"),
            "ticks are values, not logs: {texts:?}"
        );
    }

    #[test]
    fn empty_and_single_point_charts_still_render() {
        let svg = super::tests::svg(&LineChart::new("nothing"), &[]);
        assert!(svg.contains("no data yet"));
        let svg = super::tests::svg(&LineChart::new("one"), &[Series::new("a", vec![(1.0, 0.5)])]);
        assert!(svg.contains("<circle"), "a lone point is drawn as a dot");
    }
}
