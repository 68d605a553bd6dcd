//! Trust between stages: the flags that give a service its stage keys and
//! the role keys it believes, and what they resolve to (docs/security.md,
//! "Trust between stages").
//!
//! Secure by default: a service started without stage keys refuses to
//! start, unless `--insecure-no-attestation` says that it may write
//! unattested records and believe whatever lies on its inputs.

use std::path::PathBuf;

use clap::Args;
use forecast_model::Timestamp;
use forecast_model::attest::{Attester, Role, StageKeys, Verifier};
use forecast_model::keys::KeyRegistry;

use forecast_runtime::failure::{Classified, Domain};

/// Where a service finds its keys.
#[derive(Debug, Clone, Default, Args)]
pub struct TrustArgs {
    /// Stage keys (JSON Lines of secrets, as `forecastctl keys stage`
    /// writes them; `forecastctl up` makes its own): the service attests
    /// what it writes with its stage's key, and believes its input only
    /// when attested by a key of the stage before it. Give each service
    /// only the keys it uses.
    #[arg(long, env = "FORECAST_STAGE_KEYS", value_name = "FILE")]
    pub stage_keys: Option<PathBuf>,
    /// Run without attestation: write records unattested and believe any
    /// record on the inputs, whoever wrote it. Only for a trial on a broker
    /// nobody else reaches.
    #[arg(long, env = "FORECAST_INSECURE_NO_ATTESTATION")]
    pub insecure_no_attestation: bool,
}

/// Where a service finds the public keys of the roles that sign its side
/// inputs (the compliance office's licence decisions, the operator's
/// supply plan).
#[derive(Debug, Clone, Default, Args)]
pub struct RoleKeyArgs {
    /// Key registry (JSON Lines, docs/signatures.md) holding the keys of
    /// role `compliance` (licence decisions, restricted-party lists) and
    /// `operator` (supply plans): a decision, list or plan not signed by
    /// one of them is refused. One file
    /// may hold the customers' keys too (the validator's `--keys`).
    #[arg(
        long = "role-keys",
        id = "role_keys",
        env = "FORECAST_ROLE_KEYS",
        value_name = "FILE"
    )]
    pub keys: Option<PathBuf>,
}

/// A key setting that is wrong: the deployment needs a fix (exit 78).
fn deployment(message: String) -> anyhow::Error {
    anyhow::Error::new(Classified::new(Domain::Internal, message))
}

/// A service's keys, read.
#[derive(Debug, Clone)]
pub struct Trust {
    /// `None`: attestation off.
    stage_keys: Option<StageKeys>,
    registry: KeyRegistry,
}

impl Trust {
    /// Reads the keys of `args` (and of `roles`, when the service has side
    /// inputs). A service that attests as `stage` must hold a key of it.
    pub fn load(
        args: &TrustArgs,
        roles: Option<&RoleKeyArgs>,
        stage: Option<Role>,
    ) -> anyhow::Result<Self> {
        let registry = match roles.and_then(|r| r.keys.as_deref()) {
            Some(path) => KeyRegistry::from_path(path).map_err(|e| deployment(e.to_string()))?,
            None => KeyRegistry::default(),
        };
        let stage_keys = match (&args.stage_keys, args.insecure_no_attestation) {
            (_, true) => {
                tracing::warn!(
                    "--insecure-no-attestation: records are written unattested and every record on the inputs is believed, whoever wrote it"
                );
                None
            }
            (None, false) => {
                return Err(deployment(
                    "no stage keys: give --stage-keys FILE (`forecastctl keys stage` makes the keys; `forecastctl up` makes its own), or --insecure-no-attestation for a trial on a broker nobody else reaches".into(),
                ));
            }
            (Some(path), false) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    deployment(format!(
                        "cannot read the stage keys {}: {e}",
                        path.display()
                    ))
                })?;
                let keys = StageKeys::from_text(&text, &path.display().to_string())
                    .map_err(|e| deployment(e.to_string()))?;
                if let Some(stage) = stage.filter(|s| keys.attester(*s, Timestamp::now()).is_none())
                {
                    return Err(deployment(format!(
                        "{} holds no key of the {stage} in force (not revoked, valid_from not after now): add one with `forecastctl keys stage --stage {stage}`",
                        path.display()
                    )));
                }
                Some(keys)
            }
        };
        Ok(Self {
            stage_keys,
            registry,
        })
    }

    /// Keys given directly (tests, `up`).
    pub fn from_keys(stage_keys: StageKeys, registry: KeyRegistry) -> Self {
        Self {
            stage_keys: Some(stage_keys),
            registry,
        }
    }

    /// What `stage` attests with now (`None`: attestation off).
    pub fn attester(&self, stage: Role) -> Option<Attester> {
        self.stage_keys
            .as_ref()
            .and_then(|k| k.attester(stage, Timestamp::now()))
    }

    /// Believes records attested by the keys of `stages`.
    pub fn stages(&self, stages: &[Role]) -> Verifier {
        match &self.stage_keys {
            None => Verifier::believing_all(),
            Some(keys) => {
                let whom = stages
                    .iter()
                    .map(|s| format!("the {s}"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                Verifier::new(whom, keys.checks(stages))
            }
        }
    }

    /// Believes records signed by a registered key of `role`; warns when
    /// there is none (every such record is then refused).
    pub fn signed_by(&self, role: Role, what: &str) -> Verifier {
        if self.stage_keys.is_none() {
            return Verifier::believing_all();
        }
        let checks = self.registry.checks(role);
        if checks.is_empty() {
            tracing::warn!(
                role = %role,
                "no key of role {role} in the key registry (--role-keys): every {what} is refused"
            );
        }
        Verifier::new(format!("the {role}"), checks)
    }
}
