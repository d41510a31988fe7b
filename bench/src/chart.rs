//! Line charts as inline SVG, for the HTML report: our own few lines instead of a
//! charting library, so the report is one file that needs nothing to display.
//!
//! A [`Chart`] has seconds on its x axis and one or more [`Line`]s; its y axis is linear
//! from zero or logarithmic by decades, with ticks and a unit. A missing point breaks its
//! line, so a second without samples is a gap rather than a made-up value. Every point
//! carries a `<title>`, which browsers show on hover.

use std::fmt::Write as _;

/// One line of a chart: a label, a colour and a value per second (`None`: no value).
#[derive(Debug, Clone)]
pub struct Line {
    /// Shown in the legend and on hover.
    pub label: String,
    /// A CSS colour.
    pub color: &'static str,
    /// Drawn dashed.
    pub dashed: bool,
    /// The value of second `t` at index `t`.
    pub values: Vec<Option<f64>>,
}

/// The y axis of a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// From zero up to a round number above the largest value.
    Linear,
    /// Decades around the values (positive values only).
    Log,
}

/// A chart of values over seconds.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Above the plot.
    pub title: String,
    /// The unit of the y axis (`ops/s`, `ms`).
    pub unit: String,
    /// The y axis.
    pub scale: Scale,
    /// Seconds before this are shaded as warm-up.
    pub warmup: f64,
    /// The lines.
    pub lines: Vec<Line>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 40.0;

impl Chart {
    /// The chart as an `<svg>` element (no XML namespace needed inside HTML).
    pub fn svg(&self) -> String {
        let seconds = self.lines.iter().map(|l| l.values.len()).max().unwrap_or(0).max(1);
        let x_max = seconds as f64;
        let values = || self.lines.iter().flat_map(|l| l.values.iter().flatten().copied());
        let axis = match self.scale {
            Scale::Linear => Axis::linear(values().fold(0.0, f64::max)),
            Scale::Log => {
                let positive = || values().filter(|v| *v > 0.0);
                Axis::log(positive().fold(f64::INFINITY, f64::min), positive().fold(0.0, f64::max))
            }
        };
        let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let x = |t: f64| LEFT + t / x_max * plot_w;
        let y = |v: f64| TOP + plot_h * (1.0 - axis.fraction(v));
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
            escape(&self.title)
        );
        let _ = write!(svg, r#"<text class="title" x="{LEFT}" y="16">{}</text>"#, escape(&self.title));
        // Warm-up shading.
        if self.warmup > 0.0 {
            let w = x(self.warmup.min(x_max)) - LEFT;
            let _ = write!(
                svg,
                r#"<rect class="warmup" x="{LEFT}" y="{TOP}" width="{w:.1}" height="{plot_h}"/><text class="note" x="{:.1}" y="{:.1}">warm-up</text>"#,
                LEFT + 4.0,
                TOP + 12.0
            );
        }
        // Y ticks and grid.
        for tick in &axis.ticks {
            let ty = y(*tick);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT + plot_w,
                LEFT - 6.0,
                ty + 4.0,
                number(*tick)
            );
        }
        // X ticks, on whole seconds.
        for tick in linear_ticks(x_max, 10).into_iter().filter(|t| t.fract() == 0.0) {
            let tx = x(tick);
            let _ = write!(
                svg,
                r#"<line class="axis" x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}"/><text class="tick" x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + plot_h,
                TOP + plot_h + 5.0,
                TOP + plot_h + 18.0,
                number(tick)
            );
        }
        let _ = write!(
            svg,
            r#"<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}"/><line class="axis" x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
            TOP + plot_h,
            TOP + plot_h,
            LEFT + plot_w,
            TOP + plot_h
        );
        let _ = write!(
            svg,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="middle">seconds since start</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 6.0
        );
        let _ = write!(
            svg,
            r#"<text class="label" x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}{}</text>"#,
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(&self.unit),
            if self.scale == Scale::Log { " (log)" } else { "" }
        );
        // Lines: a polyline per unbroken run of values, a dot with a hover title per value.
        for line in &self.lines {
            let dash = if line.dashed { r#" stroke-dasharray="5 3""# } else { "" };
            let drawable = |v: &Option<f64>| v.filter(|v| self.scale == Scale::Linear || *v > 0.0);
            let mut run: Vec<(f64, f64)> = Vec::new();
            let flush = |run: &mut Vec<(f64, f64)>, svg: &mut String| {
                if run.len() > 1 {
                    let points: Vec<String> = run.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
                    let _ = write!(
                        svg,
                        r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"/>"#,
                        line.color,
                        points.join(" ")
                    );
                }
                run.clear();
            };
            for (t, v) in line.values.iter().enumerate() {
                match drawable(v) {
                    // A second's value is drawn at its middle.
                    Some(v) => run.push((x(t as f64 + 0.5), y(v))),
                    None => flush(&mut run, &mut svg),
                }
            }
            flush(&mut run, &mut svg);
            for (t, v) in line.values.iter().enumerate() {
                if let Some(v) = drawable(v) {
                    let _ = write!(
                        svg,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{}"><title>{}: {} {} in second {}..{}</title></circle>"#,
                        x(t as f64 + 0.5),
                        y(v),
                        line.color,
                        escape(&line.label),
                        number(v),
                        escape(&self.unit),
                        t,
                        t + 1
                    );
                }
            }
        }
        // Legend, right-aligned above the plot.
        let mut lx = WIDTH - RIGHT;
        for line in self.lines.iter().rev() {
            let width = 26.0 + 7.0 * line.label.chars().count() as f64;
            lx -= width;
            let dash = if line.dashed { r#" stroke-dasharray="5 3""# } else { "" };
            let _ = write!(
                svg,
                r#"<line x1="{lx:.1}" y1="30" x2="{:.1}" y2="30" stroke="{}" stroke-width="3"{dash}/><text class="legend" x="{:.1}" y="34">{}</text>"#,
                lx + 16.0,
                line.color,
                lx + 20.0,
                escape(&line.label)
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

/// Where values fall on a y axis, and its ticks.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    log: bool,
    low: f64,
    high: f64,
    ticks: Vec<f64>,
}

impl Axis {
    fn linear(max: f64) -> Axis {
        let ticks = linear_ticks(if max > 0.0 { max } else { 1.0 }, 5);
        let high = ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        Axis { log: false, low: 0.0, high, ticks }
    }

    /// Decades from below `min` to above `max` (one decade if there are no values).
    fn log(min: f64, max: f64) -> Axis {
        let (lo, hi) = if min.is_finite() && max > 0.0 {
            (min.log10().floor(), max.log10().ceil().max(min.log10().floor() + 1.0))
        } else {
            (0.0, 1.0)
        };
        // Two decades or less: 2 and 5 of each decade too, so values can be read off.
        let steps: &[f64] = if hi - lo <= 2.0 { &[1.0, 2.0, 5.0] } else { &[1.0] };
        let mut ticks: Vec<f64> =
            (lo as i32..hi as i32).flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e))).collect();
        ticks.push(10f64.powf(hi));
        Axis { log: true, low: 10f64.powf(lo), high: 10f64.powf(hi), ticks }
    }

    /// How far up the axis `v` is, from 0 (bottom) to 1 (top).
    fn fraction(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.max(self.low).log10() - self.low.log10()) / (self.high.log10() - self.low.log10())
        } else {
            (v - self.low) / (self.high - self.low)
        };
        f.clamp(0.0, 1.0)
    }
}

/// Round ticks from 0 to at least `max`, about `count` of them (steps of 1, 2 or 5 times
/// a power of ten).
pub fn linear_ticks(max: f64, count: usize) -> Vec<f64> {
    let max = if max > 0.0 && max.is_finite() { max } else { 1.0 };
    let raw = max / count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let steps = (max / step).ceil() as usize;
    (0..=steps).map(|i| i as f64 * step).collect()
}

/// A number as an axis or a hover shows it: `0.05`, `1.5`, `250`, `12k`, `1.5M`.
pub fn number(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
    };
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.1}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.2}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

/// `text` safe inside HTML and SVG text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round() {
        assert_eq!(linear_ticks(10.0, 5), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(linear_ticks(12_345.0, 5), [0.0, 5_000.0, 10_000.0, 15_000.0]);
        assert_eq!(linear_ticks(0.0, 5).last(), Some(&1.0));
        assert_eq!(linear_ticks(3.0, 10), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
    }

    #[test]
    fn log_axes_span_whole_decades() {
        let a = Axis::log(0.3, 250.0);
        assert_eq!(a.ticks, [0.1, 1.0, 10.0, 100.0, 1000.0]);
        assert!((a.fraction(10.0) - 0.5).abs() < 1e-9);
        assert_eq!(a.fraction(0.001), 0.0);
        assert_eq!(Axis::log(f64::INFINITY, 0.0).ticks, [1.0, 2.0, 5.0, 10.0]);
        assert_eq!(Axis::log(5.0, 5.0).ticks, [1.0, 2.0, 5.0, 10.0]);
        assert_eq!(Axis::log(1.5, 99.0).ticks, [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(0.05), "0.05");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(250.0), "250");
        assert_eq!(number(12_000.0), "12k");
        assert_eq!(number(1_500_000.0), "1.5M");
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn gaps_break_lines_and_every_point_has_a_title() {
        let chart = Chart {
            title: "read <latency>".into(),
            unit: "ms".into(),
            scale: Scale::Log,
            warmup: 1.0,
            lines: vec![Line {
                label: "p99".into(),
                color: "#d62728",
                dashed: false,
                values: vec![Some(1.0), Some(2.0), None, Some(0.0), Some(3.0), Some(4.0)],
            }],
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            2,
            "the gap and the zero (not drawable on a log axis) split it"
        );
        assert_eq!(svg.matches("<circle").count(), 4);
        assert_eq!(svg.matches("<title>").count(), 4);
        assert!(svg.contains("read &lt;latency&gt;"));
        assert!(svg.contains("warm-up"));
        assert!(svg.contains("ms (log)"));
    }
}
