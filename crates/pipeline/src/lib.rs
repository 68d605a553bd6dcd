//! The pipeline's decisions without the pipeline: the validator's and the
//! aggregator's pure cores chained in input order, exactly as the services
//! run them per record (`forecastctl replay`, `forecastctl up`'s check, and
//! the conformance tests through the Avro path).
//!
//! Not a stage: the validator and the aggregator meet only through topics;
//! this crate is the one place their cores are composed.

use forecast_aggregator::{DemandState, rescreen_verdict, sequenced_verdict};
use forecast_model::screening::ScreeningList;
use forecast_model::{Timestamp, Verdict, Warning};
use forecast_validator::{Judged, Policy, PolicyError, Validator};

/// The two pure cores, chained: what the pipeline decides for a stream.
#[derive(Debug)]
pub struct Replay {
    validator: Validator,
    state: DemandState,
    decided_at: Timestamp,
    /// Threads for the stateless step (read once: asking the OS is not free).
    threads: usize,
}

impl Replay {
    /// A replay under `policy`, from an empty state, deciding at the time
    /// it is made.
    pub fn new(policy: Policy) -> Self {
        Self::deciding_at(policy, Timestamp::now())
    }

    /// A replay whose verdicts say they were decided at `decided_at`.
    pub fn deciding_at(policy: Policy, decided_at: Timestamp) -> Self {
        // The list the submissions are screened against is also the one
        // the first re-screen's delta is computed from.
        let mut state = DemandState::new();
        let version = policy.screening_version().unwrap_or("policy").to_owned();
        state.screen_against(&version, policy.restricted_parties().clone());
        Self {
            validator: Validator::new(policy),
            state,
            decided_at,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Judges one JSON submission and, when it passes the rules, sequences
    /// and applies it. Returns the final verdict and the warnings in detail.
    pub fn submit_json(&mut self, json: &[u8]) -> (Verdict, Vec<Warning>) {
        let judged = self.judge(json);
        self.sequence(judged)
    }

    /// [`submit_json`](Self::submit_json) for many submissions, in order:
    /// decoding and the rules (stateless) run on all cores, sequencing (the
    /// only stateful step) runs in input order on this thread.
    pub fn submit_batch(&mut self, batch: &[&[u8]]) -> Vec<(Verdict, Vec<Warning>)> {
        let chunk = batch.len().div_ceil(self.threads).max(64);
        let judged: Vec<(Judged, Verdict)> = if batch.len() <= chunk {
            batch.iter().map(|json| self.judge(json)).collect()
        } else {
            let this = &*self;
            std::thread::scope(|scope| {
                let parts: Vec<_> = batch
                    .chunks(chunk)
                    .map(|part| {
                        scope.spawn(move || {
                            part.iter().map(|json| this.judge(json)).collect::<Vec<_>>()
                        })
                    })
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|p| {
                        p.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            })
        };
        judged.into_iter().map(|j| self.sequence(j)).collect()
    }

    /// Judges one submission as the services receive it, framed Avro (what
    /// `forecast-producer` sends), and when it passes the rules sequences
    /// and applies it.
    pub fn submit_framed(&mut self, framed: &[u8]) -> (Verdict, Vec<Warning>) {
        let judged = self
            .validator
            .judge_framed(framed, forecast_model::Registry::embedded());
        let verdict = self.validator.verdict(&judged, self.decided_at, None);
        self.sequence((judged, verdict))
    }

    /// Decoding and the stateless rules: the validating service's step.
    fn judge(&self, json: &[u8]) -> (Judged, Verdict) {
        let judged = self.validator.judge_json(json);
        let verdict = self.validator.verdict(&judged, self.decided_at, None);
        (judged, verdict)
    }

    /// Sequencing and demand: the aggregating service's step.
    fn sequence(&mut self, (judged, verdict): (Judged, Verdict)) -> (Verdict, Vec<Warning>) {
        match judged {
            Judged::Checked { document, report } if report.passed() => {
                let outcome = self.state.apply(&document);
                (sequenced_verdict(verdict, &outcome), report.warnings)
            }
            Judged::Checked { report, .. } => (verdict, report.warnings),
            Judged::Undecodable(_) => (verdict, Vec::new()),
        }
    }

    /// Takes a licence decision into the demand state (docs/planner.md,
    /// "Licence exposure"): the same call the aggregator makes for each
    /// record of `licences.decisions`.
    pub fn take_decision(
        &mut self,
        decision: forecast_model::LicenceDecision,
    ) -> forecast_aggregator::Decided {
        self.state.take_decision(decision)
    }

    /// Publishes a new restricted-party list after what was submitted so
    /// far: later submissions are screened against it, and the live
    /// documents its delta touches are re-screened (the aggregator's call
    /// for each version of `screening.lists`). Returns the `RESCREEN`
    /// verdicts, sorted by customer and document.
    pub fn rescreen(&mut self, list: &ScreeningList) -> Result<Vec<Verdict>, PolicyError> {
        let policy = self.validator.policy().clone().with_screening_list(list)?;
        self.validator = Validator::new(policy);
        Ok(self
            .state
            .rescreen(list)
            .iter()
            .map(|r| rescreen_verdict(r, &list.version, self.decided_at))
            .collect())
    }

    /// The demand state so far.
    pub fn state(&self) -> &DemandState {
        &self.state
    }

    /// The policy the submissions are judged under.
    pub fn policy(&self) -> &Policy {
        self.validator.policy()
    }
}
