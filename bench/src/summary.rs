//! `onsale-bench summary`: a Markdown table from the `--json` lines of earlier runs.

use std::fmt::Write as _;

use anyhow::Context as _;
use serde_json::Value;

use crate::cli::SummaryArgs;

/// Reads every JSON summary line in the files and renders one table row per section, then
/// the metrics and the verdict of each run.
pub fn render(args: &SummaryArgs) -> anyhow::Result<String> {
    let mut runs = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        runs.extend(
            text.lines()
                .filter(|l| l.starts_with('{'))
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v.get("scenario").is_some()),
        );
    }
    let mut out = String::new();
    out.push_str("| config | scenario | section | count | per s | p50 ms | p95 ms | p99 ms | max ms | answers |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---|\n");
    for run in &runs {
        let label = run["label"].as_str().unwrap_or("-");
        let scenario = run["scenario"].as_str().unwrap_or("?");
        for s in run["sections"].as_array().into_iter().flatten() {
            let codes: Vec<String> = s["codes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "| {label} | {scenario} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                s["name"].as_str().unwrap_or("?"),
                s["count"],
                num(&s["throughput"]),
                num(&s["p50_ms"]),
                num(&s["p95_ms"]),
                num(&s["p99_ms"]),
                num(&s["max_ms"]),
                codes.join(", "),
            );
        }
    }
    out.push_str("\n| config | scenario | metric | value |\n|---|---|---|---:|\n");
    for run in &runs {
        let label = run["label"].as_str().unwrap_or("-");
        let scenario = run["scenario"].as_str().unwrap_or("?");
        for (name, value) in run["metrics"].as_object().into_iter().flatten() {
            let _ = writeln!(out, "| {label} | {scenario} | {name} | {:.2} |", num(value));
        }
    }
    out.push_str("\n| config | scenario | checks |\n|---|---|---|\n");
    for run in &runs {
        let failed: Vec<&str> = run["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["ok"] == false)
            .filter_map(|c| c["name"].as_str())
            .collect();
        let verdict = if failed.is_empty() {
            "all passed".to_owned()
        } else {
            format!("FAILED: {}", failed.join("; "))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {verdict} |",
            run["label"].as_str().unwrap_or("-"),
            run["scenario"].as_str().unwrap_or("?")
        );
    }
    Ok(out)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}
