//! Figures as PNG and SVG (plotters). Text is laid out with the bundled DejaVu Sans
//! (`fonts/DejaVuSans.ttf`, Bitstream Vera licence in `fonts/DejaVu-LICENSE`), so rendering needs
//! no system font.
//!
//! Three kinds of figure: pass@K curves on a log2 K axis ([`pass_at_k_curves`]), grouped bars of
//! the rank-n candidate probabilities ([`rank_bars`]) and grids of line panels for training curves
//! and histograms ([`line_panels`]).

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const FONT: &str = "sans-serif";

/// Colours of the series, in order (the "tab10" palette).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Registers the bundled font once.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../fonts/DejaVuSans.ttf"),
        )
        .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the bundled font could not be loaded"))
    }
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// Draws the same figure into `<stem>.png` and `<stem>.svg`; returns both paths.
macro_rules! render_both {
    ($stem:expr, $size:expr, $draw:ident ( $($arg:expr),* )) => {{
        ensure_font()?;
        let stem: &Path = $stem;
        if let Some(dir) = stem.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow!("creating {}: {e}", dir.display()))?;
        }
        let png = stem.with_extension("png");
        let svg = stem.with_extension("svg");
        {
            let root = BitMapBackend::new(&png, $size).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            $draw(&root, $($arg),*)?;
            root.present().map_err(err)?;
        }
        {
            let root = SVGBackend::new(&svg, $size).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            $draw(&root, $($arg),*)?;
            root.present().map_err(err)?;
        }
        Ok(vec![png, svg])
    }};
}

/// One curve (or one run's bars): points (x, mean, half-width of the error bar; 0 for none).
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (x, y, error).
    pub points: Vec<(f64, f64, f64)>,
    /// Index into the palette, so a run keeps its colour across figures.
    pub color: usize,
}

/// One panel of [`line_panels`].
#[derive(Debug, Clone)]
pub struct Panel {
    /// Panel title (what the y axis measures, unless `y_desc` says it).
    pub title: String,
    /// y axis description ("" = none: the title says it).
    pub y_desc: String,
    /// x axis description.
    pub x_desc: String,
    /// The lines.
    pub series: Vec<Series>,
}

fn finite_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    let p = (hi - lo) * pad;
    (lo - p, hi + p)
}

/// pass@K against log2 K for several runs on one chart, with ± error bars where given
/// (x of each point is K, not log2 K).
pub fn pass_at_k_curves(stem: &Path, title: &str, curves: &[Series]) -> Result<Vec<PathBuf>> {
    render_both!(stem, (900, 600), draw_pass_at_k(title, curves))
}

fn draw_pass_at_k<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    curves: &[Series],
) -> Result<()> {
    let max_k = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let x_hi = max_k.log2().max(1.0);
    let (lo, hi) = finite_range(
        curves
            .iter()
            .flat_map(|c| c.points.iter().flat_map(|p| [p.1 - p.2, p.1 + p.2])),
        0.08,
    );
    let (lo, hi) = (lo.max(0.0), hi.min(1.0).max(lo.max(0.0) + 0.01));
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.2..x_hi + 0.2, lo..hi)
        .map_err(err)?;
    let fmt = |x: &f64| format!("{}", 2f64.powf(*x).round());
    chart
        .configure_mesh()
        .x_labels((x_hi as usize + 1).min(12))
        .x_label_formatter(&fmt)
        .x_desc("K (log2 scale)")
        .y_desc("pass@K")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(err)?;
    for c in curves {
        let col = color(c.color);
        let pts: Vec<(f64, f64)> = c.points.iter().map(|p| (p.0.log2(), p.1)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
            .map_err(err)?
            .label(&c.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, col.filled())))
            .map_err(err)?;
        chart
            .draw_series(
                c.points
                    .iter()
                    .filter(|p| p.2 > 0.0)
                    .map(|p| ErrorBar::new_vertical(p.0.log2(), p.1 - p.2, p.1, p.1 + p.2, col, 8)),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Grouped bars: for each rank n = 1.. one bar per run (value ± error), value printed above.
/// Each run's points are (rank, value, error) with ranks 1, 2, ….
pub fn rank_bars(stem: &Path, title: &str, y_desc: &str, runs: &[Series]) -> Result<Vec<PathBuf>> {
    render_both!(stem, (900, 600), draw_rank_bars(title, y_desc, runs))
}

fn draw_rank_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    runs: &[Series],
) -> Result<()> {
    let ranks = runs
        .iter()
        .map(|r| r.points.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let top = runs
        .iter()
        .flat_map(|r| r.points.iter().map(|v| v.1 + v.2))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..ranks as f64 + 0.5, 0.0..top)
        .map_err(err)?;
    let fmt = |x: &f64| {
        if (x - x.round()).abs() < 1e-6 && *x >= 1.0 {
            format!("rank {}", x.round())
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(ranks * 2 + 1)
        .x_label_formatter(&fmt)
        .y_desc(y_desc)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(err)?;
    let m = runs.len().max(1) as f64;
    let w = 0.8 / m;
    for (i, run) in runs.iter().enumerate() {
        let col = color(run.color);
        let label = &run.label;
        let values: Vec<(f64, f64)> = run.points.iter().map(|p| (p.1, p.2)).collect();
        let x0 = |r: usize| r as f64 + 1.0 - 0.4 + i as f64 * w;
        chart
            .draw_series(values.iter().enumerate().map(|(r, v)| {
                Rectangle::new(
                    [(x0(r), 0.0), (x0(r) + w * 0.92, v.0.max(0.0))],
                    col.filled(),
                )
            }))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], col.filled()));
        chart
            .draw_series(
                values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.1 > 0.0)
                    .map(|(r, v)| {
                        let xc = x0(r) + w * 0.46;
                        ErrorBar::new_vertical(xc, v.0 - v.1, v.0, v.0 + v.1, BLACK, 6)
                    }),
            )
            .map_err(err)?;
        let size = if runs.len() > 4 { 10 } else { 12 };
        chart
            .draw_series(values.iter().enumerate().map(|(r, v)| {
                Text::new(
                    format!("{:.3}", v.0),
                    (x0(r), v.0 + v.1 + top * 0.01),
                    (FONT, size).into_font().transform(FontTransform::Rotate270),
                )
            }))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Tick labels for an axis over `lo..hi` with about six ticks: as many decimals as the tick
/// spacing needs (so 0.0012 and 0.0013 do not both read 0.0), scientific notation for ranges
/// far below 1e-3, and never "-0".
pub fn tick_format(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let span = (hi - lo).abs();
    let step = span / 6.0;
    let magnitude = lo.abs().max(hi.abs());
    let scientific = magnitude > 0.0 && magnitude < 1e-3;
    let decimals = if step > 0.0 && step < 1.0 {
        ((-step.log10()).ceil() as usize).min(8)
    } else {
        0
    };
    move |v: &f64| {
        let text = if scientific {
            format!("{v:.1e}")
        } else {
            format!("{v:.decimals$}")
        };
        if text.parse::<f64>() == Ok(0.0) {
            "0".to_string()
        } else {
            text
        }
    }
}

/// A grid of line charts (`cols` per row), one legend in the first panel.
pub fn line_panels(
    stem: &Path,
    title: &str,
    panels: &[Panel],
    cols: usize,
) -> Result<Vec<PathBuf>> {
    let cols = cols.max(1);
    let rows = panels.len().div_ceil(cols).max(1);
    let size = (
        (420 * cols as u32).max(720),
        (340 * rows as u32 + 40).max(480),
    );
    render_both!(stem, size, draw_panels(title, panels, cols, rows))
}

fn draw_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
    cols: usize,
    rows: usize,
) -> Result<()> {
    let root = root.titled(title, (FONT, 22)).map_err(err)?;
    let areas = root.split_evenly((rows, cols));
    for (p_i, (panel, area)) in panels.iter().zip(areas.iter()).enumerate() {
        let (x_lo, x_hi) = finite_range(
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
            0.0,
        );
        let (y_lo, y_hi) = finite_range(
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
            0.05,
        );
        let mut builder = ChartBuilder::on(area);
        if !panel.title.is_empty() {
            builder.caption(&panel.title, (FONT, 16));
        }
        // The right margin leaves room for the last x label, centred on the axis' end.
        let mut chart = builder
            .margin(8)
            .margin_right(24)
            .x_label_area_size(35)
            .y_label_area_size(if panel.y_desc.is_empty() { 55 } else { 70 })
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .map_err(err)?;
        let y_fmt = tick_format(y_lo, y_hi);
        let wide = x_hi - x_lo >= 10.0;
        let x_fmt = move |x: &f64| {
            if wide {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        };
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .x_desc(panel.x_desc.as_str())
            .y_desc(panel.y_desc.as_str())
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for s in &panel.series {
            let col = color(s.color);
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|p| p.1.is_finite())
                .map(|p| (p.0, p.1))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, col.stroke_width(2)))
                .map_err(err)?
                .label(&s.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                });
        }
        if p_i == 0 && panel.series.iter().any(|s| !s.label.is_empty()) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
    }
    Ok(())
}

/// A centred moving average over `window` points (the ends use the points available), for
/// readable training curves; `window` ≤ 1 returns the values unchanged.
pub fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    if window <= 1 {
        return values.to_vec();
    }
    let half = window / 2;
    (0..values.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(values.len());
            let w: Vec<f64> = values[lo..hi]
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            if w.is_empty() {
                f64::NAN
            } else {
                w.iter().sum::<f64>() / w.len() as f64
            }
        })
        .collect()
}
