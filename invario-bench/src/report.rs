//! Results: one row per measurement, each beside its baseline from the same run.

use std::fmt::Write as _;

use serde::Serialize;

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Measurement {
    pub(crate) scenario: &'static str,
    pub(crate) case: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    /// How many operations (entries, requests) the figure is over.
    pub(crate) operations: u64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) baselines: Vec<Baseline>,
    /// The targets, in words, and whether this run met them.
    pub(crate) targets: Vec<Target>,
}

/// What a measurement is compared with.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Baseline {
    pub(crate) name: String,
    pub(crate) value: f64,
    /// This measurement's value over the baseline's.
    pub(crate) ratio: f64,
}

/// A goal a measurement is held to (reported, never enforced).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    pub(crate) goal: String,
    pub(crate) met: bool,
}

impl Measurement {
    pub(crate) fn new(
        scenario: &'static str,
        case: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Measurement {
            scenario,
            case: case.into(),
            value,
            unit,
            operations: 0,
            p50_ms: None,
            p99_ms: None,
            baselines: Vec::new(),
            targets: Vec::new(),
        }
    }

    pub(crate) fn over(mut self, operations: u64) -> Self {
        self.operations = operations;
        self
    }

    pub(crate) fn latencies(mut self, latencies: &Latencies) -> Self {
        self.p50_ms = Some(latencies.percentile_ms(50.0));
        self.p99_ms = Some(latencies.percentile_ms(99.0));
        self
    }

    pub(crate) fn against(mut self, name: impl Into<String>, value: f64) -> Self {
        let ratio = if value > 0.0 { self.value / value } else { f64::NAN };
        self.baselines.push(Baseline { name: name.into(), value, ratio });
        self
    }

    /// A target on the ratio to the baseline added last.
    pub(crate) fn target_ratio(self, at_least: f64) -> Self {
        let (name, ratio) =
            self.baselines.last().map_or((String::new(), f64::NAN), |last| (last.name.clone(), last.ratio));
        self.target(format!("≥ {at_least} × {name}"), ratio >= at_least)
    }

    pub(crate) fn target(mut self, goal: impl Into<String>, met: bool) -> Self {
        self.targets.push(Target { goal: goal.into(), met });
        self
    }
}

/// Latencies of individual operations.
#[derive(Debug, Default)]
pub(crate) struct Latencies(Vec<f64>);

impl Latencies {
    pub(crate) fn record(&mut self, elapsed: std::time::Duration) {
        self.0.push(elapsed.as_secs_f64() * 1000.0);
    }

    pub(crate) fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The nearest-rank percentile, in milliseconds (NaN when empty).
    pub(crate) fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((percentile / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

/// A number with thousands separators, or with 2 decimals when small.
fn figure(value: f64) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    if value.abs() >= 100.0 {
        let whole = value.round() as i64;
        let digits = whole.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if whole < 0 { format!("-{grouped}") } else { grouped }
    } else {
        format!("{value:.2}")
    }
}

/// The markdown table of a run.
pub(crate) fn markdown(measurements: &[Measurement]) -> String {
    let mut table = String::from(
        "| scenario | case | result | p50 / p99 | compared with (same run) | target |\n\
         |---|---|---:|---:|---|---|\n",
    );
    for measurement in measurements {
        let latency = match (measurement.p50_ms, measurement.p99_ms) {
            (Some(p50), Some(p99)) => format!("{p50:.1} / {p99:.1} ms"),
            _ => String::new(),
        };
        let baselines: Vec<String> = measurement
            .baselines
            .iter()
            .map(|baseline| {
                format!(
                    "{} {} {}: **{:.2} ×**",
                    baseline.name,
                    figure(baseline.value),
                    measurement.unit,
                    baseline.ratio
                )
            })
            .collect();
        let targets: Vec<String> = measurement
            .targets
            .iter()
            .map(|target| format!("{} {}", target.goal, if target.met { "✅" } else { "❌ missed" }))
            .collect();
        let _ = writeln!(
            table,
            "| {} | {} | {} {} | {latency} | {} | {} |",
            measurement.scenario,
            measurement.case,
            figure(measurement.value),
            measurement.unit,
            baselines.join("<br>"),
            targets.join("<br>"),
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::{Latencies, Measurement, figure, markdown};
    use std::time::Duration;

    #[test]
    fn figures_are_grouped_and_small_ones_keep_decimals() {
        assert_eq!(figure(1_234_567.4), "1,234,567");
        assert_eq!(figure(999.6), "1,000");
        assert_eq!(figure(12.345), "12.35");
        assert_eq!(figure(f64::NAN), "–");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut latencies = Latencies::default();
        for millis in 1..=100 {
            latencies.record(Duration::from_millis(millis));
        }
        assert_eq!(latencies.percentile_ms(50.0), 50.0);
        assert_eq!(latencies.percentile_ms(99.0), 99.0);
        assert_eq!(latencies.percentile_ms(100.0), 100.0);
        assert!(Latencies::default().percentile_ms(50.0).is_nan());
    }

    #[test]
    fn a_row_shows_the_ratio_to_its_baseline_and_the_target_verdict() {
        let row = Measurement::new("2", "batch 8000", 25_000.0, "rows/s")
            .against("raw COPY", 27_000.0)
            .target_ratio(0.9);
        let table = markdown(&[row]);
        assert!(table.contains("| 2 | batch 8000 | 25,000 rows/s |"), "{table}");
        assert!(table.contains("| raw COPY 27,000 rows/s: **0.93 ×** | ≥ 0.9 × raw COPY ✅ |"), "{table}");
    }
}
