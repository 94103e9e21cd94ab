//! The ledger's verification: full and incremental sweeps over one read
//! snapshot, what they must find, and the status that quarantines writes.

use std::sync::PoisonError;

use futures_util::StreamExt;

use super::Ledger;
use crate::chain::ChainPosition;
use crate::integrity::{IntegrityBreak, VerificationRecord, VerificationReport, Verifier};
use crate::merkle::Frontier;
use crate::ports::{LedgerStore, StoreError, Sweep, VerificationSource};

/// What a full verification must find besides an intact chain and tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// A head exported earlier (`invario digest`): the chain must still pass through it.
    pub digest: Option<ChainPosition>,
    /// Signed tree heads from checkpoints verified by the caller: the tree
    /// rebuilt from the entries must have each root at its size.
    pub signed_roots: Vec<crate::merkle::TreeHead>,
}

/// What the service knows about the chain's integrity right now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IntegrityStatus {
    /// The last position verified intact (where incremental runs resume).
    pub verified: Option<ChainPosition>,
    /// The break found by the latest run, if it found one.
    pub broken: Option<IntegrityBreak>,
    /// The Merkle tree's compact range rebuilt up to `verified` (where
    /// incremental runs resume rebuilding it).
    pub verified_tree: Option<Frontier>,
}

impl IntegrityStatus {
    /// Healthy means verified at least once and no break found since this service started.
    pub fn is_healthy(&self) -> bool {
        self.verified.is_some() && self.broken.is_none()
    }
}

impl<S: LedgerStore> Ledger<S> {
    /// What the latest verifications found.
    pub fn integrity(&self) -> IntegrityStatus {
        self.integrity.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Verifies every entry and every transaction.
    pub async fn verify_full(&self) -> Result<VerificationReport, StoreError> {
        self.verify_full_with(&Expectations::default(), &mut |_| {}).await
    }

    /// Verifies every entry and every transaction, and that the ledger meets
    /// `expect` (a saved digest, signed tree heads). `progress` is called with
    /// the running count.
    pub async fn verify_full_with(
        &self,
        expect: &Expectations,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<VerificationReport, StoreError> {
        let report = self.run_verification(Sweep::Full, None, None, expect, progress).await?;
        self.record(&report);
        Ok(report)
    }

    /// Verifies only the entries added since the last intact verification
    /// (everything, if there was none).
    pub async fn verify_incremental(&self) -> Result<VerificationReport, StoreError> {
        let status = self.integrity();
        let resume_from = status.verified;
        let sweep = match resume_from {
            Some(checkpoint) => Sweep::After(checkpoint.sequence_number),
            None => Sweep::Full,
        };
        let report = self
            .run_verification(sweep, resume_from, status.verified_tree, &Expectations::default(), &mut |_| {})
            .await?;
        self.record(&report);
        Ok(report)
    }

    /// Quarantines the ledger for a break found outside a verification run
    /// (the first break found is kept for good).
    pub(crate) fn record_break(&self, found: IntegrityBreak) {
        let mut status = self.integrity.lock().unwrap_or_else(PoisonError::into_inner);
        if status.broken.is_none() {
            status.broken = Some(found);
        }
    }

    /// Notes a run's outcome: the first break found is kept for good.
    fn record(&self, report: &VerificationReport) {
        let mut status = self.integrity.lock().unwrap_or_else(PoisonError::into_inner);
        match &report.first_break {
            Some(found) if status.broken.is_none() => status.broken = Some(found.clone()),
            Some(_) => {}
            None if status.broken.is_none() => {
                status.verified = Some(report.verified);
                status.verified_tree.clone_from(&report.rebuilt_tree);
            }
            None => {}
        }
    }

    async fn run_verification(
        &self,
        sweep: Sweep,
        resume_from: Option<ChainPosition>,
        resume_tree: Option<Frontier>,
        expect: &Expectations,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<VerificationReport, StoreError> {
        const PROGRESS_EVERY: u64 = 10_000;
        let mut source = self.store.verification_source().await?;
        let head = source.head().await?;
        let stored_tree = source.tree().await?;
        let mut verifier = match (resume_from, resume_tree) {
            (None, _) => Verifier::full(head),
            (Some(position), None) => Verifier::resume(head, position),
            (Some(position), Some(tree)) => Verifier::resume(head, position).resume_tree(tree),
        }
        .expect_tree(stored_tree)
        .expect_signed_roots(expect.signed_roots.clone());
        if let Some(digest) = expect.digest {
            verifier = verifier.expect_digest(digest);
        }
        let after = match sweep {
            Sweep::Full => 0,
            Sweep::After(sequence) => sequence,
        };
        let mut seen: u64 = 0;
        let mut intact = true;
        {
            let mut entries = source.entries_after(after);
            while let Some(record) = entries.next().await {
                seen += 1;
                if seen % PROGRESS_EVERY == 0 {
                    progress(seen);
                }
                if !verifier.feed(&record?) {
                    intact = false;
                    break;
                }
            }
        }
        if intact && sweep == Sweep::Full {
            let mut orphans = source.orphan_transactions();
            while let Some(orphan) = orphans.next().await {
                if !verifier.feed(&VerificationRecord::OrphanTransaction(orphan?)) {
                    break;
                }
            }
        }
        let report = verifier.finish();
        progress(report.entries_checked);
        Ok(report)
    }
}
