//! Where `serve`'s checkpoint key and sink come from: flags, or — for the
//! embedded default — a key and a directory beside the database file, created
//! on first start so the zero-setup path signs too.

use std::path::PathBuf;

use anyhow::{Context, bail};
use invario_core::note::{ALGORITHM_ED25519, SignerKey};
use invario_http::{CheckpointSettings, Sink};
use rand::TryRngCore;

use crate::cli::ServeArgs;
use crate::keyfile;

/// The key the embedded default creates beside its database.
const EMBEDDED_KEY_FILE: &str = "invario-checkpoint.key";
/// The sink directory's default name.
const DEFAULT_SINK_DIR: &str = "invario-checkpoints";
/// The origin of a key the embedded default creates, unless --origin says otherwise.
const EMBEDDED_DEFAULT_ORIGIN: &str = "localhost/invario";

/// The signing settings for `serve`; `embedded` is the SQLite file's folder.
pub(crate) fn settings(args: &ServeArgs, embedded: Option<PathBuf>) -> anyhow::Result<CheckpointSettings> {
    let signer = match (&args.checkpoint_key, &embedded) {
        (Some(path), _) if !path.exists() => bail!(
            "the checkpoint key {} does not exist: create it with `invario checkpoint-key generate --origin ORIGIN --out {}` (ORIGIN names the log for good, e.g. ledger.example.com/payments)",
            path.display(),
            path.display()
        ),
        (Some(path), _) => keyfile::read_private(path)?,
        (None, Some(folder)) => embedded_key(&folder.join(EMBEDDED_KEY_FILE), args.origin.as_deref())?,
        (None, None) => bail!(
            "--checkpoint-key is required on PostgreSQL: create one with `invario checkpoint-key generate --origin ORIGIN --out FILE`, keep it off the database host, and pass --checkpoint-key FILE"
        ),
    };
    if let Some(origin) = &args.origin
        && origin != signer.name()
    {
        bail!(
            "--origin {origin} is not the checkpoint key's name {}: a log's origin never changes",
            signer.name()
        );
    }
    let dir = match (&args.checkpoint_dir, embedded) {
        (Some(dir), _) => dir.clone(),
        (None, Some(folder)) => folder.join(DEFAULT_SINK_DIR),
        (None, None) => PathBuf::from(DEFAULT_SINK_DIR),
    };
    let sink = Sink::open(&dir)?;
    tracing::info!(
        event = "checkpoint_signer",
        origin = signer.name(),
        vkey = %signer.verifier(),
        checkpoint_dir = %dir.display(),
    );
    let witnesses = args
        .witnesses
        .iter()
        .map(|spec| {
            let (url, vkey) =
                spec.split_once('=').with_context(|| format!("--witness {spec:?}: expected URL=VKEY"))?;
            let vkey = invario_core::note::VerifierKey::parse(vkey)
                .with_context(|| format!("--witness {spec:?}"))?;
            if vkey.algorithm() != invario_core::note::ALGORITHM_COSIGNATURE {
                bail!("--witness {spec:?}: {} is not a witness (cosignature) key", vkey.name());
            }
            Ok(invario_http::WitnessTarget { url: url.to_owned(), vkey })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(path) = &args.witness_policy {
        let policy = crate::audit::read_policy(path)?;
        let witnesses = policy
            .witnesses()
            .iter()
            .map(|witness| {
                let url = witness.url.clone().with_context(|| {
                    format!(
                        "--witness-policy {}: witness {} has no URL to submit to",
                        path.display(),
                        witness.name
                    )
                })?;
                Ok(invario_http::WitnessTarget { url, vkey: witness.key.clone() })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(CheckpointSettings {
            signer,
            sink,
            interval: args.checkpoint_interval,
            witnesses,
            quorum: policy.min_cosigners(),
            policy: Some(policy),
            proof_wait: args.proof_wait,
        });
    }
    let quorum = args.witness_quorum.unwrap_or(usize::from(!witnesses.is_empty()));
    if quorum > witnesses.len() {
        bail!(
            "--witness-quorum: must be between 0 and the number of --witness flags, {} (got {quorum})",
            witnesses.len()
        );
    }
    Ok(CheckpointSettings {
        signer,
        sink,
        interval: args.checkpoint_interval,
        witnesses,
        quorum,
        policy: None,
        proof_wait: args.proof_wait,
    })
}

/// The embedded default's key: read it, or create it on first start.
fn embedded_key(path: &std::path::Path, origin: Option<&str>) -> anyhow::Result<SignerKey> {
    if path.exists() {
        return keyfile::read_private(path);
    }
    let origin = origin.unwrap_or(EMBEDDED_DEFAULT_ORIGIN);
    invario_core::checkpoint::check_origin(origin)?;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut seed).context("the operating system's random source failed")?;
    let key = SignerKey::from_seed(origin, ALGORITHM_ED25519, seed)?;
    keyfile::write_private(path, &key.to_private_text())?;
    tracing::info!(
        event = "checkpoint_key_created",
        path = %path.display(),
        vkey = %key.verifier(),
        "created a checkpoint key for the embedded ledger; keep a copy of it and give the vkey to auditors"
    );
    Ok(key)
}
