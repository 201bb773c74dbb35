//! The charts: grouped bars of ratios against a reference (a dashed line at
//! 1.0), each bar labelled with its value, as SVG files.

use crate::common::report::{Chart, Report};
use plotters::prelude::*;
use plotters::series::DashedLineSeries;
use std::error::Error;
use std::path::{Path, PathBuf};

const COLOURS: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
];
const FONT: &str = "sans-serif";

/// Draws every chart of `report` into `out`; returns the files written.
pub fn render_all(report: &Report, out: &Path) -> Vec<PathBuf> {
    report
        .charts
        .iter()
        .map(|chart| {
            let path = out.join(format!("{}-{}.svg", report.bench, chart.name));
            let note = format!(
                "{}, {} run(s), load {:.1}-{:.1} on {} CPUs",
                report.conditions.date,
                report.conditions.runs,
                report.conditions.load_start,
                report.conditions.load_end,
                report.conditions.cpus
            );
            draw(chart, &note, &path).unwrap_or_else(|e| panic!("drawing {}: {e}", path.display()));
            path
        })
        .collect()
}

fn draw(chart: &Chart, note: &str, path: &Path) -> Result<(), Box<dyn Error>> {
    let groups = chart.groups.len().max(1);
    let bars = chart.series.len().max(1);
    let width = (120 + groups * (bars * 34 + 30)).max(560) as u32;
    let root = SVGBackend::new(path, (width, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(1.0f64, |a, &b| a.max(b));
    let mut plot = ChartBuilder::on(&root)
        .caption(&chart.title, (FONT, 17))
        .margin(12)
        .margin_bottom(40)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..groups as f64, 0f64..top * 1.18)?;
    plot.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(chart.y_label.as_str())
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()?;
    let slot = 0.8 / bars as f64;
    for (i, series) in chart.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let x0 = |g: usize| g as f64 + 0.1 + i as f64 * slot;
        let bars_of = series.values.iter().enumerate().filter_map(|(g, v)| {
            v.map(|v| Rectangle::new([(x0(g), 0.0), (x0(g) + slot * 0.9, v)], colour.filled()))
        });
        plot.draw_series(bars_of)?
            .label(series.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        let values = series.values.iter().enumerate().filter_map(|(g, v)| {
            let v = (*v)?;
            let at = (x0(g) + slot * 0.45, v);
            let style = (FONT, 11).into_font().color(&BLACK).pos(text_anchor());
            Some(Text::new(format!("{v:.2}"), at, style))
        });
        plot.draw_series(values)?;
    }
    let one = [(0.0, 1.0), (groups as f64, 1.0)];
    plot.draw_series(DashedLineSeries::new(one, 6, 4, BLACK.stroke_width(1)))?;
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()?;
    for (g, label) in chart.groups.iter().enumerate() {
        let (x, y) = plot.backend_coord(&(g as f64 + 0.5, 0.0));
        let style = (FONT, 12).into_font().color(&BLACK).pos(below_anchor());
        root.draw(&Text::new(label.as_str(), (x, y + 6), style))?;
    }
    let style = (FONT, 11).into_font().color(&RGBColor(90, 90, 90));
    root.draw(&Text::new(note, (12, 420 - 18), style))?;
    root.present()?;
    Ok(())
}

/// A bar's value sits centred just above it.
fn text_anchor() -> plotters::style::text_anchor::Pos {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    Pos::new(HPos::Center, VPos::Bottom)
}

/// A group's label sits centred just below the axis.
fn below_anchor() -> plotters::style::text_anchor::Pos {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    Pos::new(HPos::Center, VPos::Top)
}
