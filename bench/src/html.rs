//! `--html FILE`: a run's [`Report`] as one self-contained HTML page: its settings, the
//! summary table, and charts over time (throughput per operation, and each operation's
//! p50, p99 and max latency per second), so a stall shows at a glance. Inline CSS and SVG
//! only: no script, no font, nothing fetched.

use std::fmt::Write as _;

use crate::chart::{Chart, Line, Scale, escape, number};
use crate::report::{Report, cells};
use crate::workload::Op;

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px; color: #222; max-width: 800px; }
h1 { font-size: 20px; margin-bottom: 4px; }
h2 { font-size: 16px; margin-top: 28px; }
p.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.settings td { text-align: left; }
.chart { display: block; margin: 8px 0 16px; font-size: 11px; }
.chart .title { font-size: 13px; font-weight: 600; }
.chart .tick, .chart .label, .chart .legend, .chart .note { fill: #444; }
.chart .note { fill: #888; }
.chart .grid { stroke: #e5e5e5; }
.chart .axis { stroke: #888; }
.chart .warmup { fill: #f2f2f2; }
.errors { color: #b00; }
";

/// The colour of an operation's line.
fn color(op: Op) -> &'static str {
    match op {
        Op::Read => "#1f77b4",
        Op::Update => "#ff7f0e",
        Op::Insert => "#2ca02c",
        Op::Rmw => "#9467bd",
        Op::Put => "#8c564b",
        Op::Scan => "#e377c2",
    }
}

/// The page.
pub fn render(report: &Report) -> String {
    let mut html = String::new();
    let title = format!(
        "quorumkv-bench: workload {} against {}",
        report.workload,
        serde_json::to_value(report.target)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    let _ = writeln!(html, "<h1>{}</h1>", escape(&title));
    let _ = writeln!(
        html,
        "<p class=\"sub\">{:.0} ops/s, {} ops, {} errors</p>",
        report.ops_per_sec, report.ops, report.errors
    );
    settings(&mut html, report);
    summary(&mut html, report);
    charts(&mut html, report);
    let _ = writeln!(
        html,
        "<p class=\"sub\">Made by quorumkv-bench {}. Percentiles are HdrHistogram's (three significant digits over \
         the run, two per second); a second's figures are the operations that finished in it.</p>",
        env!("CARGO_PKG_VERSION")
    );
    html.push_str("</body>\n</html>\n");
    html
}

fn settings(html: &mut String, r: &Report) {
    html.push_str("<h2>Settings</h2>\n<table class=\"settings\">\n");
    let rows = [
        ("workload", r.workload_line()),
        ("setup", r.setup_line()),
        ("nodes", r.nodes.join(", ")),
        ("load", r.load_line()),
    ];
    for (name, value) in rows {
        let _ = writeln!(html, "<tr><td>{}</td><td>{}</td></tr>", escape(name), escape(&value));
    }
    html.push_str("</table>\n");
}

fn summary(html: &mut String, r: &Report) {
    let _ = writeln!(
        html,
        "<h2>Summary</h2>\n<p>{:.0} ops/s ({} ops), {:.0} requests/s</p>",
        r.ops_per_sec, r.ops, r.requests_per_sec
    );
    if let Some(line) = r.scan_line() {
        let _ = writeln!(html, "<p>{}</p>", escape(&line));
    }
    html.push_str(
        "<table>\n<tr><th>latency ms</th><th>count</th><th>ops/s</th><th>errors</th><th>p50</th><th>p95</th>\
         <th>p99</th><th>p99.9</th><th>max</th></tr>\n",
    );
    for (name, rate, errors, s) in r.rows() {
        let _ = write!(html, "<tr><td>{}</td>", escape(&name));
        for cell in cells(rate, errors, &s) {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    if r.errors > 0 {
        html.push_str("<p class=\"errors\">Errors by kind:</p>\n<ul class=\"errors\">\n");
        for line in r.error_lines() {
            let _ = writeln!(html, "<li>{}</li>", escape(&line));
        }
        html.push_str("</ul>\n");
    }
}

fn charts(html: &mut String, r: &Report) {
    html.push_str("<h2>Over time</h2>\n");
    if r.series.is_empty() {
        html.push_str("<p>No operation finished: nothing to chart.</p>\n");
        return;
    }
    let ops: Vec<Op> = r.mix.ops().collect();
    // Throughput: a cut-short last second would look like a drop, so it is left out.
    let per_second = |f: &dyn Fn(&crate::series::SecondSummary) -> f64| -> Vec<Option<f64>> {
        r.series.iter().map(|s| (!s.partial).then(|| f(s))).collect()
    };
    let mut lines: Vec<Line> = ops
        .iter()
        .map(|&op| Line {
            label: op.name().into(),
            color: color(op),
            dashed: false,
            values: per_second(&|s| s.ops.get(op.name()).map_or(0.0, |f| f.count as f64)),
        })
        .collect();
    if ops.len() > 1 {
        lines.push(Line {
            label: "all".into(),
            color: "#333",
            dashed: true,
            values: per_second(&|s| s.ops.values().map(|f| f.count as f64).sum()),
        });
    }
    let errors = per_second(&|s| s.ops.values().map(|f| f.errors as f64).sum());
    if errors.iter().flatten().any(|&e| e > 0.0) {
        lines.push(Line { label: "errors".into(), color: "#d62728", dashed: true, values: errors });
    }
    let chart = Chart {
        title: "Throughput per second".into(),
        unit: "ops/s".into(),
        scale: Scale::Linear,
        warmup: r.warmup_s,
        lines,
    };
    html.push_str(&chart.svg());
    html.push('\n');
    for &op in &ops {
        let pick = |f: fn(&crate::series::OpSecond) -> u64| -> Vec<Option<f64>> {
            r.series
                .iter()
                .map(|s| s.ops.get(op.name()).filter(|o| o.count > 0).map(|o| f(o) as f64 / 1000.0))
                .collect()
        };
        let chart = Chart {
            title: format!("{} latency per second", op.name()),
            unit: "ms".into(),
            scale: Scale::Log,
            warmup: r.warmup_s,
            lines: vec![
                Line { label: "p50".into(), color: "#2ca02c", dashed: false, values: pick(|o| o.p50_us) },
                Line { label: "p99".into(), color: "#ff7f0e", dashed: false, values: pick(|o| o.p99_us) },
                Line { label: "max".into(), color: "#d62728", dashed: true, values: pick(|o| o.max_us) },
            ],
        };
        html.push_str(&chart.svg());
        html.push('\n');
    }
    let _ = writeln!(
        html,
        "<p class=\"sub\">{} seconds; hover a point for its value. Latency axes are logarithmic.</p>",
        number(r.series.len() as f64)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The elements of `html` that are never closed.
    const VOID: [&str; 4] = ["meta", "br", "hr", "img"];

    /// Checks that every tag is closed in order; returns the tag names seen.
    fn balanced(html: &str) -> Result<Vec<String>, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        let mut rest = html;
        while let Some(open) = rest.find('<') {
            rest = &rest[open + 1..];
            let close = rest.find('>').ok_or("a `<` is never closed")?;
            let tag = &rest[..close];
            rest = &rest[close + 1..];
            if tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                continue;
            }
            let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            if name.is_empty() {
                return Err(format!("bad tag <{tag}>"));
            }
            seen.push(name.clone());
            // The style sheet holds no tags; skip to its end.
            if name == "style" {
                let end = rest.find("</style>").ok_or("unclosed style")?;
                rest = &rest[end + "</style>".len()..];
                continue;
            }
            if !tag.ends_with('/') && !VOID.contains(&name.as_str()) {
                stack.push(name);
            }
        }
        if stack.is_empty() { Ok(seen) } else { Err(format!("never closed: {stack:?}")) }
    }

    #[test]
    fn the_page_is_well_formed_and_self_contained() {
        let report = crate::report::tests::sample(&["--workload", "a", "--warmup", "1s"]);
        let html = render(&report);
        let tags = balanced(&html).unwrap_or_else(|e| panic!("{e}\n{html}"));
        assert!(html.starts_with("<!DOCTYPE html>"));
        // A throughput chart and a latency chart per operation.
        assert_eq!(tags.iter().filter(|t| *t == "svg").count(), 3, "{tags:?}");
        for expected in ["polyline", "circle", "title", "text", "table", "rect"] {
            assert!(tags.iter().any(|t| t == expected), "no <{expected}>");
        }
        for forbidden in ["http://", "https://", "<script", "@import", "url("] {
            assert!(!html.contains(forbidden), "the page contains {forbidden}");
        }
        assert!(html.contains("Throughput per second"));
        assert!(html.contains("read latency per second"));
        assert!(html.contains("update latency per second"));
        assert!(html.contains("ops/s"));
        assert!(html.contains("warm-up"));
        assert!(html.contains("timeout 3 (read 2, update 1)"));
    }

    #[test]
    fn the_stall_shows_in_the_latency_chart() {
        let report = crate::report::tests::sample(&["--workload", "a"]);
        let html = render(&report);
        // Second 1 of the sample took 400 ms per operation, the others 2 to 11 ms: the
        // points say so (as HdrHistogram's highest equivalent values, to two digits).
        assert!(html.contains("<title>p99: 401 ms in second 1..2</title>"), "{html}");
        assert!(html.contains("<title>p99: 11.01 ms in second 0..1</title>"), "{html}");
        assert!(html.contains("<title>max: 401 ms in second 1..2</title>"), "{html}");
    }

    #[test]
    fn names_are_escaped() {
        let mut report = crate::report::tests::sample(&["--workload", "a"]);
        report.nodes = vec!["<script>".into()];
        let html = render(&report);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(balanced(&html).is_ok());
    }

    #[test]
    fn the_checker_catches_bad_nesting() {
        assert!(balanced("<a><b></a></b>").is_err());
        assert!(balanced("<a>").is_err());
        assert!(balanced("<a><br><c/></a>").is_ok());
    }
}
