//! A service's metrics ([`forecast_runtime::metrics`]) with the pipeline's
//! labels: every rule code (`forecast_rejections{code}`) and stage
//! (`forecast_dead_letters{stage}`), each a series from the start.

use forecast_model::{RuleCode, Stage};
use forecast_runtime::metrics::{Labels, Metrics};

/// The metrics of `service`, labelled with every rule code and stage.
pub fn new(service: &'static str) -> Metrics {
    Metrics::labelled(
        service,
        &Labels {
            codes: RuleCode::ALL.iter().map(|c| c.to_string()).collect(),
            stages: Stage::ALL
                .iter()
                .map(|s| s.as_str().to_ascii_lowercase())
                .collect(),
        },
    )
}

/// Counting by the pipeline's own codes and stages, on metrics made by
/// [`new`].
pub trait Counts {
    /// A verdict's rejection codes.
    fn rejected(&self, codes: &[RuleCode]);
    /// A record dead-lettered at `stage`.
    fn dead_letter(&self, stage: Stage);
}

impl Counts for Metrics {
    fn rejected(&self, codes: &[RuleCode]) {
        self.rejected_at(codes.iter().map(|c| c.index()));
    }

    fn dead_letter(&self, stage: Stage) {
        self.dead_letter_at(stage.index());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series `name` in `text`.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    }

    #[test]
    fn every_code_and_stage_is_a_series_and_counts_its_own() {
        let m = new("validator");
        m.rejected(&[RuleCode::SkuUnknown, RuleCode::SkuUnknown]);
        m.dead_letter(Stage::Sequence);
        let text = m.render();
        for code in RuleCode::ALL {
            let series =
                format!("forecast_rejections_total{{service=\"validator\",code=\"{code}\"}}");
            let want = if *code == RuleCode::SkuUnknown {
                2.0
            } else {
                0.0
            };
            assert_eq!(sample(&text, &series), Some(want), "{series}");
        }
        for stage in Stage::ALL {
            let name = stage.as_str().to_ascii_lowercase();
            let series =
                format!("forecast_dead_letters_total{{service=\"validator\",stage=\"{name}\"}}");
            let want = if *stage == Stage::Sequence { 1.0 } else { 0.0 };
            assert_eq!(sample(&text, &series), Some(want), "{series}");
        }
    }
}
