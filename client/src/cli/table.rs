//! Plain-text tables and figures for people.

use std::fmt::Write;
use std::time::Duration;

/// Columns padded to their widest cell, two spaces apart, header in capitals.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<const N: usize>(header: [&str; N]) -> Table {
        Table { header: header.iter().map(|h| h.to_uppercase()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    let _ = write!(line, "{cell}{:pad$}  ", "");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Two-column "name  value" lines, names padded.
pub fn pairs(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let pad = width - k.chars().count();
        let _ = writeln!(out, "{k}{:pad$}  {v}", "");
    }
    out
}

/// 1536 → "1.5 KiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// 3725 s → "1h 2m 5s".
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m {seconds}s"),
        _ => format!("{days}d {hours}h {minutes}m"),
    }
}

/// 12345 → "12,345".
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A share from 0 to 1 as a percentage: 0.9923 → "99.2%". Rounded down, so that only
/// all of them reads "100%".
pub fn percent(share: f64) -> String {
    match share {
        s if s >= 1.0 => "100%".into(),
        s if s <= 0.0 => "0%".into(),
        s => format!("{:.1}%", (s * 1000.0).floor() / 10.0),
    }
}

/// Milliseconds for people: "0 ms", "0.25 ms", "3.1 ms", "42 ms", "2.5 s".
pub fn millis(ms: f64) -> String {
    let short = |v: f64, places: usize| {
        let s = format!("{v:.places$}");
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
    };
    match ms {
        m if m >= 1000.0 => format!("{} s", short(m / 1000.0, 1)),
        m if m >= 10.0 => format!("{} ms", short(m, 0)),
        m if m >= 1.0 => format!("{} ms", short(m, 1)),
        m => format!("{} ms", short(m, 2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(["member", "state"]);
        t.row(vec!["node-1".into(), "up".into()]);
        t.row(vec!["n2".into(), "down".into()]);
        assert_eq!(t.render(), "MEMBER  STATE\nnode-1  up\nn2      down\n");
    }

    #[test]
    fn figures() {
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(duration(Duration::from_secs(3725)), "1h 2m 5s");
        assert_eq!(duration(Duration::from_secs(59)), "59s");
        assert_eq!(duration(Duration::from_secs(90_000)), "1d 1h 0m");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(12_345), "12,345");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(percent(0.9923), "99.2%");
        assert_eq!(percent(0.99999), "99.9%", "only all of them is 100%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(millis(0.0), "0 ms");
        assert_eq!(millis(0.25), "0.25 ms");
        assert_eq!(millis(0.1), "0.1 ms");
        assert_eq!(millis(3.12), "3.1 ms");
        assert_eq!(millis(1.0), "1 ms");
        assert_eq!(millis(42.4), "42 ms");
        assert_eq!(millis(2500.0), "2.5 s");
        assert_eq!(millis(10_000.0), "10 s");
    }
}
