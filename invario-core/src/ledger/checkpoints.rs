//! The checkpoint signer and its guard (docs/verifiability.md, "Why the signer checks before it signs"): before signing,
//! the tree must be proven consistent with the latest checkpoint kept
//! **outside** the database (handed in by the shell, which reads it from its
//! sink). If it is not — the chain was rewritten, truncated or forked behind
//! the service's back — nothing is signed and the ledger is quarantined.

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::integrity::IntegrityBreak;
use crate::ledger::Ledger;
use crate::ledger::tree::ProofRequestError;
use crate::merkle::{TreeHead, verify_consistency};
use crate::note::SignerKey;
use crate::ports::{LedgerStore, StoreError};

/// What the signer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignOutcome {
    /// A new checkpoint of a grown tree: write `note` to the sink, then serve it.
    Signed {
        /// What it states.
        checkpoint: Checkpoint,
        /// The signed note, byte-exact C2SP.
        note: String,
    },
    /// The tree has not grown since the sink's latest checkpoint, and is still consistent with it.
    Unchanged(Checkpoint),
}

/// Why nothing was signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The sink's latest checkpoint does not verify with this key (another key,
    /// another origin, or a damaged file): an operator must look.
    #[error("the latest checkpoint in the sink cannot be trusted: {0}")]
    Sink(#[from] CheckpointError),
    /// The tree is not consistent with the sink's latest checkpoint. The ledger is now quarantined.
    #[error("refusing to sign: {0}")]
    Inconsistent(IntegrityBreak),
    /// The ledger is quarantined already: a broken ledger is never signed.
    #[error("refusing to sign a quarantined ledger: {0}")]
    Quarantined(IntegrityBreak),
    /// Storage failed; try again later.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a writer asks its answer to wait for (`Prefer: wait=signed` or
/// `wait=witnessed` over HTTP): a checkpoint covering its entries, signed by
/// the log — and, for `Witnessed`, cosigned by the witness quorum — so the
/// answer can carry a tlog-proof that verifies offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofWait {
    /// A signed checkpoint covers the entries.
    Signed,
    /// A signed checkpoint covers the entries and carries at least the
    /// witness quorum of cosignatures (at least one).
    Witnessed,
}

impl ProofWait {
    /// The wait a preference value names (`signed`, `witnessed`; any case),
    /// or `None` for any other value, which the asker gets no wait for.
    pub fn from_preference(value: &str) -> Option<ProofWait> {
        match value.trim().trim_matches('"').to_ascii_lowercase().as_str() {
            "signed" => Some(ProofWait::Signed),
            "witnessed" => Some(ProofWait::Witnessed),
            _ => None,
        }
    }

    /// The preference's name, as `Preference-Applied` repeats it.
    pub fn name(self) -> &'static str {
        match self {
            ProofWait::Signed => "signed",
            ProofWait::Witnessed => "witnessed",
        }
    }

    /// Whether a checkpoint of `signed_size` entries carrying `cosignatures`
    /// meets the wait of entries up to `sequence_number`, for a log whose
    /// witness quorum is `quorum`.
    pub fn is_met(self, sequence_number: u64, signed_size: u64, cosignatures: usize, quorum: usize) -> bool {
        signed_size >= sequence_number
            && match self {
                ProofWait::Signed => true,
                ProofWait::Witnessed => cosignatures >= quorum.max(1),
            }
    }
}

impl<S: LedgerStore> Ledger<S> {
    /// Proves the current tree consistent with `latest_in_sink` (the note the
    /// shell read from its sink, `None` before the first), then signs a
    /// checkpoint of it with `signer` (whose name is the origin) if the tree grew.
    pub async fn sign_checkpoint(
        &self,
        signer: &SignerKey,
        latest_in_sink: Option<&[u8]>,
    ) -> Result<SignOutcome, SignError> {
        if let Some(found) = self.integrity().broken {
            return Err(SignError::Quarantined(found));
        }
        let latest = latest_in_sink.map(|note| Checkpoint::verify(note, &signer.verifier())).transpose()?;
        let tree = self.tree_head().await?;
        let current = Checkpoint {
            origin: signer.name().to_owned(),
            head: TreeHead { size: tree.size, root: tree.root },
        };
        if let Some((latest, _)) = &latest {
            self.check_consistent(latest, &current).await?;
            if latest.head.size == current.head.size {
                return Ok(SignOutcome::Unchanged(current));
            }
        }
        let note = current.sign(signer)?.to_text();
        Ok(SignOutcome::Signed { checkpoint: current, note })
    }

    /// Keeps a copy of a checkpoint in the database, for serving by any process
    /// (after it was written to the sink: the sink is the reference).
    pub async fn keep_checkpoint_copy(&self, checkpoint: &Checkpoint, note: &str) -> Result<(), StoreError> {
        self.store().store_checkpoint(checkpoint.head.size, note).await
    }

    /// The copy of the latest signed checkpoint, as served.
    pub async fn latest_checkpoint_copy(&self) -> Result<Option<String>, StoreError> {
        self.store().latest_checkpoint().await
    }

    /// The tree now must extend `latest`: proven with a consistency proof from
    /// the stored tiles, verified against the root `latest` signed.
    async fn check_consistent(&self, latest: &Checkpoint, current: &Checkpoint) -> Result<(), SignError> {
        let inconsistent = || IntegrityBreak::CheckpointInconsistent {
            checkpoint_size: latest.head.size,
            checkpoint_root: latest.head.root,
            tree_size: current.head.size,
            tree_root: current.head.root,
        };
        let consistent = if latest.head.size > current.head.size {
            false
        } else {
            match self.consistency_proof(latest.head.size, Some(current.head.size)).await {
                Ok(proof) => verify_consistency(
                    latest.head.size,
                    current.head.size,
                    &latest.head.root,
                    &current.head.root,
                    &proof.hashes,
                )
                .is_ok(),
                Err(ProofRequestError::Store(error)) => return Err(SignError::Store(error)),
                // Tiles that cannot prove the old size are as damning as a failed proof.
                Err(_) => false,
            }
        };
        if consistent {
            return Ok(());
        }
        let found = inconsistent();
        self.record_break(found.clone());
        Err(SignError::Inconsistent(found))
    }
}
