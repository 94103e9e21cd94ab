//! Scenario 1 (`hashing`): the chain hash in the core, encoding included, vs plain SHA-256 over pre-encoded bytes.

use super::*;

/// Scenario 1: the chain hash (encoding included) vs SHA-256 over pre-encoded bytes.
pub(super) fn core_hashing(entries: u64) -> anyhow::Result<Vec<Measurement>> {
    // Rows as stored: the hash reads them exactly as the verifier does.
    let recorded_at = now()?;
    let sample: Vec<(StoredEntry, StoredTransaction)> =
        workload::transactions(0, 0, entries.clamp(1, 65_536))?
            .into_iter()
            .map(|transaction| {
                Ok(StoredTransaction::of(&LedgerEntry::next(
                    ChainPosition::GENESIS,
                    transaction,
                    recorded_at,
                )?))
            })
            .collect::<anyhow::Result<_>>()?;
    let encoded: Vec<Vec<u8>> = sample
        .iter()
        .enumerate()
        .map(|(index, (entry, transaction))| {
            encode_entry_v1(&EntryHash::GENESIS, index as u64 + 1, &entry.content(transaction))
        })
        .collect();
    let mean_bytes = encoded.iter().map(Vec::len).sum::<usize>() as f64 / encoded.len() as f64;

    let started = Instant::now();
    let mut previous = EntryHash::GENESIS;
    for sequence in 1..=entries {
        let (entry, transaction) = &sample[(sequence as usize - 1) % sample.len()];
        previous = entry_hash_v1(&previous, sequence, &entry.content(transaction));
    }
    std::hint::black_box(previous);
    let chain_rate = entries as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    for index in 0..entries as usize {
        std::hint::black_box(Sha256::digest(&encoded[index % encoded.len()]));
    }
    let sha_rate = entries as f64 / started.elapsed().as_secs_f64();

    Ok(vec![
        Measurement::new(
            "1 core hash",
            format!(
                "entry_hash_v1: encode + SHA-256 of {mean_bytes:.0} B ({:.0} vs {:.0} ns/entry)",
                1e9 / chain_rate,
                1e9 / sha_rate
            ),
            chain_rate,
            "entries/s",
        )
        .over(entries)
        .against("plain SHA-256 of the encoded bytes", sha_rate),
    ])
}
