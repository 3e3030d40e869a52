//! Results: one row per measured figure, printed as a table, written as JSON and drawn
//! as an SVG bar chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::load::percentile_f64;
use crate::nodes::RssEntry;

/// One figure of one workload, over all runs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// Workload (and variant) name.
    pub(crate) workload: String,
    /// Unit of `runs`, `median`, `min`, `max`: `req/s`, `records/s` or `s`; empty for
    /// rows that only report latencies.
    pub(crate) unit: String,
    /// The value of each run.
    pub(crate) runs: Vec<f64>,
    /// Median of `runs`.
    pub(crate) median: Option<f64>,
    /// Smallest of `runs`.
    pub(crate) min: Option<f64>,
    /// Largest of `runs`.
    pub(crate) max: Option<f64>,
    /// Each run's 50th-percentile latency (ms).
    pub(crate) runs_p50_ms: Vec<f64>,
    /// Each run's 99th-percentile latency (ms).
    pub(crate) runs_p99_ms: Vec<f64>,
    /// Median over runs of the 50th-percentile latency (ms).
    pub(crate) p50_ms: Option<f64>,
    /// Median over runs of the 99th-percentile latency (ms).
    pub(crate) p99_ms: Option<f64>,
    /// Failed requests over all runs.
    pub(crate) errors: u64,
    /// What the latency measures, when it is not a request's round trip.
    pub(crate) note: String,
    /// Further figures (per workload).
    pub(crate) detail: Value,
}

impl Row {
    /// An empty row.
    pub(crate) fn new(workload: impl Into<String>, unit: impl Into<String>) -> Row {
        Row {
            workload: workload.into(),
            unit: unit.into(),
            runs: Vec::new(),
            median: None,
            min: None,
            max: None,
            runs_p50_ms: Vec::new(),
            runs_p99_ms: Vec::new(),
            p50_ms: None,
            p99_ms: None,
            errors: 0,
            note: String::new(),
            detail: Value::Null,
        }
    }

    /// Adds one run's value and latency percentiles.
    pub(crate) fn push(&mut self, value: Option<f64>, p50_ms: Option<f64>, p99_ms: Option<f64>) {
        if let Some(v) = value {
            self.runs.push(v);
        }
        if let Some(v) = p50_ms {
            self.runs_p50_ms.push(v);
        }
        if let Some(v) = p99_ms {
            self.runs_p99_ms.push(v);
        }
        self.median = median(&self.runs);
        self.min = self.runs.iter().copied().reduce(f64::min);
        self.max = self.runs.iter().copied().reduce(f64::max);
        self.p50_ms = median(&self.runs_p50_ms);
        self.p99_ms = median(&self.runs_p99_ms);
    }

    /// Sets a note (builder style).
    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }
}

/// Median (mean of the two middle values for an even count).
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    Some(if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    })
}

/// A workload that did not run, and why.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Skipped {
    /// Workload name.
    pub(crate) workload: String,
    /// Why: not selected for this target, or the error that stopped it.
    pub(crate) reason: String,
}

/// Everything the benchmark reports.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// How it ran: settings, machine, binary.
    pub(crate) meta: Value,
    /// Measured rows, in run order.
    pub(crate) rows: Vec<Row>,
    /// Resident memory of each node the benchmark started.
    pub(crate) rss: Vec<RssEntry>,
    /// Workloads that failed or were skipped.
    pub(crate) failed: Vec<Skipped>,
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

impl Report {
    /// The results as a plain-text table.
    pub(crate) fn table(&self) -> String {
        let header = [
            "workload", "unit", "median", "min", "max", "p50 ms", "p99 ms", "errors", "note",
        ];
        let mut lines: Vec<[String; 9]> = vec![header.map(str::to_owned)];
        for r in &self.rows {
            lines.push([
                r.workload.clone(),
                if r.unit.is_empty() {
                    "-".into()
                } else {
                    r.unit.clone()
                },
                fmt_num(r.median),
                fmt_num(r.min),
                fmt_num(r.max),
                fmt_num(r.p50_ms),
                fmt_num(r.p99_ms),
                r.errors.to_string(),
                r.note.clone(),
            ]);
        }
        let mut widths = [0usize; 9];
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            for (j, cell) in line.iter().enumerate() {
                let pad = widths[j] - cell.chars().count();
                if j == 0 || j == 1 || j == 8 {
                    let _ = write!(out, "{cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(out, "{}{cell}", " ".repeat(pad));
                }
                if j < 8 {
                    out.push_str("  ");
                }
            }
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push('\n');
            if i == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * 8;
                out.push_str(&"-".repeat(total.min(160)));
                out.push('\n');
            }
        }
        if !self.rss.is_empty() {
            out.push_str(
                "\nresident memory (VmRSS, with mapped database pages; RssAnon, without)\n",
            );
            for e in &self.rss {
                let _ = writeln!(
                    out,
                    "  {:<20} {:<12} max {:>8.1} MiB   anon max {:>7.1} MiB   after runs {:>8} MiB",
                    e.workload,
                    e.node,
                    e.max_mib,
                    e.max_anon_mib,
                    e.after_runs_mib
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
                );
            }
        }
        if !self.failed.is_empty() {
            out.push_str("\nnot measured\n");
            for s in &self.failed {
                let _ = writeln!(out, "  {}: {}", s.workload, s.reason);
            }
        }
        out
    }

    /// Writes the JSON report, creating the folder if needed.
    pub(crate) fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        create_parent(path)?;
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Writes the SVG chart, creating the folder if needed.
    pub(crate) fn write_svg(&self, path: &Path) -> anyhow::Result<()> {
        create_parent(path)?;
        std::fs::write(path, self.svg()).with_context(|| format!("writing {}", path.display()))
    }

    /// A horizontal bar chart: one panel per unit (throughput with a min–max whisker,
    /// seconds), one for latencies (p50 and p99 bars) and one for memory.
    pub(crate) fn svg(&self) -> String {
        const WIDTH: f64 = 1060.0;
        const LABEL: f64 = 300.0;
        const BAR_MAX: f64 = 520.0;
        const ROW: f64 = 22.0;
        let mut panels: Vec<(String, Vec<Bar>)> = Vec::new();
        for unit in ["req/s", "records/s", "msgs/s", "s"] {
            let bars: Vec<Bar> = self
                .rows
                .iter()
                .filter(|r| r.unit == unit && r.median.is_some())
                .map(|r| Bar {
                    label: r.workload.clone(),
                    value: r.median.unwrap_or(0.0),
                    second: None,
                    range: r.min.zip(r.max),
                    text: format!("{} {unit}", fmt_num(r.median)),
                })
                .collect();
            if !bars.is_empty() {
                let title = match unit {
                    "s" => "time (median of runs; whisker: min–max)".to_owned(),
                    u => format!("throughput, {u} (median of runs; whisker: min–max)"),
                };
                panels.push((title, bars));
            }
        }
        let latency = |lag: bool| -> Vec<Bar> {
            self.rows
                .iter()
                .filter(|r| r.p50_ms.is_some() || r.p99_ms.is_some())
                .filter(|r| r.unit.is_empty() == lag)
                .map(|r| Bar {
                    label: r.workload.clone(),
                    value: r.p99_ms.unwrap_or(0.0),
                    second: r.p50_ms,
                    range: None,
                    text: format!("p50 {} / p99 {} ms", fmt_num(r.p50_ms), fmt_num(r.p99_ms)),
                })
                .collect()
        };
        for (lag, title) in [
            (
                false,
                "request latency, ms (dark: p50, light: p99; median of runs)",
            ),
            (
                true,
                "replication lag, ms: ack on A -> seen on receivers (dark: p50, light: p99)",
            ),
        ] {
            let bars = latency(lag);
            if !bars.is_empty() {
                panels.push((title.into(), bars));
            }
        }
        let memory: Vec<Bar> = self
            .rss
            .iter()
            .map(|e| Bar {
                label: format!("{} {}", e.workload, e.node),
                value: e.max_mib,
                second: e.after_runs_mib,
                range: None,
                text: format!(
                    "max {:.0} / after {} MiB",
                    e.max_mib,
                    e.after_runs_mib
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
                ),
            })
            .collect();
        if !memory.is_empty() {
            panels.push((
                "resident memory, MiB (light: max; dark: after runs)".into(),
                memory,
            ));
        }

        let mut body = String::new();
        let mut y = 40.0;
        for (title, bars) in &panels {
            let _ = writeln!(
                body,
                r#"<text x="10" y="{y}" font-size="14" font-weight="bold">{}</text>"#,
                escape(title)
            );
            y += 10.0;
            let scale_max = bars
                .iter()
                .map(|b| b.range.map_or(b.value, |(_, hi)| hi.max(b.value)))
                .fold(0.0_f64, f64::max)
                .max(f64::MIN_POSITIVE);
            for bar in bars {
                let w = |v: f64| (v / scale_max * BAR_MAX).max(0.0);
                let _ = writeln!(
                    body,
                    r#"<text x="{}" y="{}" font-size="12" text-anchor="end">{}</text>"#,
                    LABEL - 8.0,
                    y + 15.0,
                    escape(&bar.label)
                );
                let light = if bar.second.is_some() {
                    "#9ecae1"
                } else {
                    "#3182bd"
                };
                let _ = writeln!(
                    body,
                    r#"<rect x="{LABEL}" y="{}" width="{:.1}" height="16" fill="{light}"/>"#,
                    y + 3.0,
                    w(bar.value)
                );
                if let Some(second) = bar.second {
                    let _ = writeln!(
                        body,
                        r##"<rect x="{LABEL}" y="{}" width="{:.1}" height="16" fill="#08519c"/>"##,
                        y + 3.0,
                        w(second)
                    );
                }
                if let Some((lo, hi)) = bar.range {
                    let (x1, x2, ym) = (LABEL + w(lo), LABEL + w(hi), y + 11.0);
                    let _ = writeln!(
                        body,
                        r#"<path d="M{x1:.1} {ym} H{x2:.1} M{x1:.1} {} V{} M{x2:.1} {} V{}" stroke="black" stroke-width="1"/>"#,
                        ym - 5.0,
                        ym + 5.0,
                        ym - 5.0,
                        ym + 5.0
                    );
                }
                let right = bar
                    .range
                    .map_or(w(bar.value), |(_, hi)| w(hi).max(w(bar.value)));
                let _ = writeln!(
                    body,
                    r#"<text x="{:.1}" y="{}" font-size="12">{}</text>"#,
                    LABEL + right + 6.0,
                    y + 15.0,
                    escape(&bar.text)
                );
                y += ROW;
            }
            y += 24.0;
        }
        let title = format!(
            "shoal-bench — {} connections, {} s × {} runs",
            self.meta["connections"], self.meta["duration_s"], self.meta["runs"]
        );
        format!(
            concat!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#,
                "\n",
                r#"<rect width="100%" height="100%" fill="white"/>"#,
                "\n",
                r#"<text x="10" y="20" font-size="16" font-weight="bold">{title}</text>"#,
                "\n{body}</svg>\n"
            ),
            w = WIDTH,
            h = y + 10.0,
            title = escape(&title),
            body = body
        )
    }
}

struct Bar {
    label: String,
    value: f64,
    second: Option<f64>,
    range: Option<(f64, f64)>,
    text: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(())
}

/// The `q` percentile of lag samples (ms), for rows that measure lag.
pub(crate) fn lag_percentile(samples: &[f64], q: f64) -> Option<f64> {
    percentile_f64(samples, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_statistics() {
        let mut row = Row::new("x", "req/s");
        row.push(Some(3.0), Some(1.0), Some(9.0));
        row.push(Some(1.0), Some(2.0), Some(8.0));
        row.push(Some(2.0), Some(3.0), Some(7.0));
        assert_eq!(
            (row.median, row.min, row.max),
            (Some(2.0), Some(1.0), Some(3.0))
        );
        assert_eq!((row.p50_ms, row.p99_ms), (Some(2.0), Some(8.0)));
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
    }

    #[test]
    fn renders_table_and_svg() {
        let mut row = Row::new("rest_get", "req/s");
        row.push(Some(1000.0), Some(0.5), Some(2.0));
        let report = Report {
            meta: serde_json::json!({"connections": 64, "duration_s": 10.0, "runs": 1}),
            rows: vec![row],
            rss: Vec::new(),
            failed: Vec::new(),
        };
        assert!(report.table().contains("rest_get"));
        let svg = report.svg();
        assert!(svg.starts_with("<svg") && svg.contains("rest_get") && svg.ends_with("</svg>\n"));
    }
}
