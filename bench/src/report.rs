//! Measurements and their presentation: latency histograms with answer counts per section,
//! derived metrics, invariant checks, and the human and JSON renderings of a run.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use crate::client::{Answer, is_failure};

/// Latencies (microseconds, 3 significant figures) and answers by code.
#[derive(Clone)]
pub struct Stats {
    hist: Histogram<u64>,
    codes: BTreeMap<String, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        // One microsecond to one hour; auto-resize covers anything beyond.
        let mut hist = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("constant histogram bounds are valid");
        hist.auto(true);
        Self {
            hist,
            codes: BTreeMap::new(),
        }
    }

    pub fn record(&mut self, code: &str, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.hist.saturating_record(micros);
        *self.codes.entry(code.to_owned()).or_default() += 1;
    }

    pub fn record_answer(&mut self, answer: &Answer) {
        self.record(&answer.code, answer.latency);
    }

    /// Counts an outcome without a latency (e.g. a missed delivery).
    pub fn count_only(&mut self, code: &str) {
        *self.codes.entry(code.to_owned()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Stats) {
        // Both histograms auto-resize, so adding cannot fail on range.
        let _ = self.hist.add(&other.hist);
        for (code, n) in &other.codes {
            *self.codes.entry(code.clone()).or_default() += n;
        }
    }

    /// Outcomes counted, with or without a latency.
    pub fn count(&self) -> u64 {
        self.codes.values().sum()
    }

    pub fn code(&self, code: &str) -> u64 {
        self.codes.get(code).copied().unwrap_or(0)
    }

    pub fn codes(&self) -> &BTreeMap<String, u64> {
        &self.codes
    }

    /// Answers that mean the server or the network failed.
    pub fn failures(&self) -> u64 {
        self.codes
            .iter()
            .filter(|(code, _)| is_failure(code))
            .map(|(_, n)| n)
            .sum()
    }

    /// The latency at quantile `q` (0..=1) in milliseconds; 0 without samples.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.value_at_quantile(q) as f64 / 1000.0
        }
    }

    pub fn max_ms(&self) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.max() as f64 / 1000.0
        }
    }
}

/// One measured stream of requests (or deliveries) over a wall-clock span.
pub struct Section {
    pub name: String,
    pub stats: Stats,
    pub elapsed: Duration,
}

impl Section {
    pub fn new(name: impl Into<String>, stats: Stats, elapsed: Duration) -> Self {
        Self {
            name: name.into(),
            stats,
            elapsed,
        }
    }

    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.stats.count() as f64 / secs
        } else {
            0.0
        }
    }
}

/// One verified invariant.
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Everything a scenario found.
pub struct Report {
    pub scenario: &'static str,
    pub label: Option<String>,
    params: Vec<(String, Value)>,
    sections: Vec<Section>,
    metrics: Vec<(String, f64, &'static str)>,
    checks: Vec<Check>,
}

impl Report {
    pub fn new(scenario: &'static str) -> Self {
        Self {
            scenario,
            label: None,
            params: Vec::new(),
            sections: Vec::new(),
            metrics: Vec::new(),
            checks: Vec::new(),
        }
    }

    pub fn param(&mut self, name: &str, value: impl Into<Value>) {
        self.params.push((name.to_owned(), value.into()));
    }

    /// Adds a section, and a check that none of its answers is a failure.
    pub fn section(&mut self, section: Section) {
        let failures = section.stats.failures();
        let failed_codes: Vec<String> = section
            .stats
            .codes()
            .iter()
            .filter(|(code, _)| is_failure(code))
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        self.check(
            format!("{}: no INTERNAL, 5xx or transport failures", section.name),
            failures == 0,
            if failures == 0 {
                format!("{} answers", section.stats.count())
            } else {
                failed_codes.join(", ")
            },
        );
        self.sections.push(section);
    }

    /// Adds a section that sums up others (their failures are checked there already).
    pub fn total(&mut self, section: Section) {
        self.sections.push(section);
    }

    pub fn metric(&mut self, name: &str, value: f64, unit: &'static str) {
        self.metrics.push((name.to_owned(), value, unit));
    }

    pub fn check(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        });
    }

    /// Adds `other`'s checks, each name followed by `suffix`.
    pub fn add_checks_of(&mut self, other: Report, suffix: &str) {
        for mut check in other.checks {
            check.name.push_str(suffix);
            self.checks.push(check);
        }
    }

    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let label = self
            .label
            .as_deref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default();
        out.push_str(&format!("== {}{label} ==\n", self.scenario));
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        out.push_str(&format!("params      {}\n", params.join(" ")));
        for s in &self.sections {
            let st = &s.stats;
            out.push_str(&format!("-- {}\n", s.name));
            out.push_str(&format!(
                "  count     {} in {:.2} s = {:.1}/s\n",
                st.count(),
                s.elapsed.as_secs_f64(),
                s.throughput()
            ));
            out.push_str(&format!(
                "  latency   p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
                st.quantile_ms(0.50),
                st.quantile_ms(0.95),
                st.quantile_ms(0.99),
                st.max_ms()
            ));
            let codes: Vec<String> = st.codes().iter().map(|(c, n)| format!("{c} {n}")).collect();
            out.push_str(&format!("  answers   {}\n", codes.join(", ")));
        }
        if !self.metrics.is_empty() {
            out.push_str("-- metrics\n");
            for (name, value, unit) in &self.metrics {
                out.push_str(&format!("  {name:<34} {value:.2} {unit}\n"));
            }
        }
        out.push_str("-- checks\n");
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            out.push_str(&format!("  [{mark}] {} ({})\n", c.name, c.detail));
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        if failed == 0 {
            out.push_str("result      OK\n");
        } else {
            out.push_str(&format!(
                "result      VIOLATION ({failed} check(s) failed)\n"
            ));
        }
        out
    }

    /// The one-line machine-readable summary.
    pub fn to_json(&self) -> Value {
        let params: Map<String, Value> = self.params.iter().cloned().collect();
        let sections: Vec<Value> = self
            .sections
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "count": s.stats.count(),
                    "duration_s": round(s.elapsed.as_secs_f64()),
                    "throughput": round(s.throughput()),
                    "p50_ms": round(s.stats.quantile_ms(0.50)),
                    "p95_ms": round(s.stats.quantile_ms(0.95)),
                    "p99_ms": round(s.stats.quantile_ms(0.99)),
                    "max_ms": round(s.stats.max_ms()),
                    "codes": s.stats.codes(),
                })
            })
            .collect();
        let metrics: Map<String, Value> = self
            .metrics
            .iter()
            .map(|(name, value, _)| (name.clone(), json!(round(*value))))
            .collect();
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail}))
            .collect();
        json!({
            "scenario": self.scenario,
            "label": self.label,
            "ok": self.ok(),
            "params": params,
            "sections": sections,
            "metrics": metrics,
            "checks": checks,
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_merge_and_quantiles() {
        let mut a = Stats::new();
        for ms in 1..=100 {
            a.record("OK", Duration::from_millis(ms));
        }
        let mut b = Stats::new();
        b.record("INTERNAL", Duration::from_millis(500));
        b.count_only("MISSED");
        a.merge(&b);
        assert_eq!(a.count(), 102);
        assert_eq!(a.failures(), 1);
        assert!((a.quantile_ms(0.5) - 51.0).abs() < 1.0);
        assert!((a.max_ms() - 500.0).abs() < 1.0);
    }

    #[test]
    fn failures_make_the_report_fail() {
        let mut report = Report::new("t");
        let mut stats = Stats::new();
        stats.record("HTTP_502", Duration::from_millis(1));
        report.section(Section::new("s", stats, Duration::from_secs(1)));
        assert!(!report.ok());
        assert_eq!(report.to_json()["ok"], false);
    }
}
