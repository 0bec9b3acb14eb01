//! Figures render to PNG files that decode and are not blank, and to SVG.

use rlvr_eval::plot::{line_panels, pass_at_k_curves, rank_bars, Panel, Series};
use std::path::Path;

/// Decodes a PNG and returns (width, height, fraction of non-white pixels, distinct colours).
fn inspect(path: &Path) -> (u32, u32, f64, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let bytes = &buf[..info.buffer_size()];
    let mut colors = std::collections::HashSet::new();
    let mut non_white = 0usize;
    for p in bytes.chunks(px) {
        colors.insert(p[..3].to_vec());
        if p[..3] != [255, 255, 255] {
            non_white += 1;
        }
    }
    let total = (info.width * info.height) as f64;
    (
        info.width,
        info.height,
        non_white as f64 / total,
        colors.len(),
    )
}

fn assert_drawn(paths: &[std::path::PathBuf], min_ink: f64) {
    assert_eq!(paths.len(), 2);
    let png = paths
        .iter()
        .find(|p| p.extension().unwrap() == "png")
        .unwrap();
    let svg = paths
        .iter()
        .find(|p| p.extension().unwrap() == "svg")
        .unwrap();
    let (w, h, ink, colors) = inspect(png);
    assert!(w >= 400 && h >= 300, "{w}x{h}");
    assert!(
        ink > min_ink,
        "{}: only {ink:.4} of the pixels are drawn",
        png.display()
    );
    assert!(colors > 8, "{}: {colors} colours", png.display());
    let text = std::fs::read_to_string(svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("</svg>"));
}

#[test]
fn pass_at_k_curves_render() {
    let dir = tempfile::tempdir().unwrap();
    let curve = |label: &str, base: f64, color: usize| Series {
        label: label.into(),
        color,
        points: [1, 2, 4, 8, 16, 32, 64]
            .iter()
            .map(|&k| (k as f64, 1.0 - (1.0 - base).powf((k as f64).sqrt()), 0.02))
            .collect(),
    };
    let paths = pass_at_k_curves(
        &dir.path().join("plots/passk"),
        "pass@K",
        &[curve("grpo", 0.4, 0), curve("simko", 0.35, 1)],
    )
    .unwrap();
    assert_drawn(&paths, 0.01);
    let svg = std::fs::read_to_string(dir.path().join("plots/passk.svg")).unwrap();
    assert!(svg.contains("simko") && svg.contains("pass@K"));
}

#[test]
fn rank_bars_render() {
    let dir = tempfile::tempdir().unwrap();
    let bars = |label: &str, v: [(f64, f64); 5], color: usize| Series {
        label: label.into(),
        points: v
            .iter()
            .enumerate()
            .map(|(i, p)| (i as f64 + 1.0, p.0, p.1))
            .collect(),
        color,
    };
    let runs = vec![
        bars(
            "grpo",
            [
                (0.9, 0.01),
                (0.05, 0.005),
                (0.02, 0.0),
                (0.01, 0.0),
                (0.005, 0.0),
            ],
            0,
        ),
        bars(
            "simko",
            [
                (0.8, 0.02),
                (0.1, 0.01),
                (0.04, 0.0),
                (0.02, 0.0),
                (0.01, 0.0),
            ],
            1,
        ),
    ];
    let paths = rank_bars(
        &dir.path().join("bars"),
        "rank-n probability",
        "mean p",
        &runs,
    )
    .unwrap();
    assert_drawn(&paths, 0.03);
}

#[test]
fn line_panels_render() {
    let dir = tempfile::tempdir().unwrap();
    let series = |label: &str, f: fn(f64) -> f64| Series {
        label: label.into(),
        color: label.len(),
        points: (0..100).map(|i| (i as f64, f(i as f64), 0.0)).collect(),
    };
    let panels: Vec<Panel> = ["reward", "entropy", "Λ(1)"]
        .iter()
        .map(|t| Panel {
            title: t.to_string(),
            y_desc: String::new(),
            x_desc: "step".into(),
            series: vec![series("a", |x| (x / 10.0).sin()), series("b", |x| x.sqrt())],
        })
        .collect();
    let paths = line_panels(&dir.path().join("train"), "training", &panels, 2).unwrap();
    assert_drawn(&paths, 0.01);
}

#[test]
fn degenerate_inputs_still_render() {
    let dir = tempfile::tempdir().unwrap();
    // A single K, a flat curve, NaN values and an empty run must not fail.
    let flat = Series {
        label: "flat".into(),
        color: 0,
        points: vec![(1.0, 0.5, 0.0)],
    };
    pass_at_k_curves(&dir.path().join("a"), "one point", &[flat]).unwrap();
    let nan = Series {
        label: "nan".into(),
        color: 3,
        points: vec![(0.0, f64::NAN, 0.0), (1.0, 1.0, 0.0)],
    };
    let panel = Panel {
        title: "t".into(),
        y_desc: String::new(),
        x_desc: "x".into(),
        series: vec![nan],
    };
    line_panels(&dir.path().join("b"), "nan", &[panel], 1).unwrap();
    rank_bars(&dir.path().join("c"), "empty", "p", &[]).unwrap();
}

/// Whether a pixel is the white background.
fn background(p: &[u8]) -> bool {
    p[..3].iter().all(|c| *c >= 250)
}

#[test]
fn training_panels_keep_their_labels_inside_and_small_values_readable() {
    let dir = tempfile::tempdir().unwrap();
    let series = |f: fn(f64) -> f64| Series {
        label: String::new(),
        color: 1,
        points: (1..=150).map(|i| (i as f64, f(i as f64), 0.0)).collect(),
    };
    let panel = |title: &str, f: fn(f64) -> f64| Panel {
        title: title.into(),
        y_desc: String::new(),
        x_desc: "step".into(),
        series: vec![series(f)],
    };
    let panels = vec![
        panel("reward", |x| 0.6 + x / 1000.0),
        panel("KL", |_| 0.0),
        panel("approximate KL", |x| 2e-5 * (x / 7.0).sin()),
    ];
    let paths = line_panels(&dir.path().join("t"), "training", &panels, 3).unwrap();
    // Nothing drawn in the last columns or rows: the last x label ("150") is not cut.
    let png = paths
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .unwrap();
    let file = std::fs::File::open(png).unwrap();
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h, px) = (
        info.width as usize,
        info.height as usize,
        info.color_type.samples(),
    );
    let at = |x: usize, y: usize| &buf[(y * w + x) * px..(y * w + x) * px + px];
    for y in 0..h {
        for x in w - 3..w {
            assert!(background(at(x, y)), "drawn at the right edge ({x}, {y})");
        }
    }
    for x in 0..w {
        for y in h - 3..h {
            assert!(background(at(x, y)), "drawn at the bottom edge ({x}, {y})");
        }
    }
    // Tick labels: no "-0", and values of 1e-5 are not all printed as 0.0.
    let svg = std::fs::read_to_string(dir.path().join("t.svg")).unwrap();
    let labels: Vec<&str> = svg
        .split("</text>")
        .filter_map(|t| t.rsplit('>').next())
        .map(str::trim)
        .collect();
    assert!(
        !labels
            .iter()
            .any(|l| l.parse::<f64>() == Ok(0.0) && l.starts_with('-')),
        "a -0 tick label: {labels:?}"
    );
    assert!(
        labels.iter().any(|l| l.ends_with("e-5")),
        "ticks of a 1e-5 range in scientific notation: {labels:?}"
    );
}

#[test]
fn tick_labels_have_the_decimals_their_spacing_needs() {
    let f = rlvr_eval::plot::tick_format(0.0012, 0.0018);
    assert_ne!(f(&0.0013), f(&0.0014));
    let f = rlvr_eval::plot::tick_format(-0.4, 0.4);
    assert_eq!(f(&-0.0), "0");
    assert_eq!(f(&0.2), "0.2");
    let f = rlvr_eval::plot::tick_format(0.0, 150.0);
    assert_eq!(f(&150.0), "150");
}
