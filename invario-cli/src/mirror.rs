//! `invario mirror` and `invario verify --mirror`: a verified copy of a log
//! as a static C2SP tlog-tiles tree (`checkpoint`, `tile/<L>/<N>[.p/<W>]`,
//! `tile/entries/<N>[.p/<W>]`) that any static file server can serve.
//!
//! Every run checks **every** resource of the new tree against the signed
//! root (`invario_core::tiled::check_tiled_log`: leaves recomputed from the
//! entry bundles, every tile recomputed from them) and the new tree against
//! the checkpoint mirrored last time, before writing anything; the
//! checkpoint is written last, so a mirror is always a complete, checked
//! tree, and a refused run leaves the old copy as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use invario_core::checkpoint::Checkpoint;
use invario_core::note::VerifierKey;
use invario_core::tiled::{CheckedTiles, TileResource, check_tiled_log, resources_at};

use crate::remote::fetch_bytes;

/// Resources fetched at once.
const PARALLEL_FETCHES: usize = 8;
/// The checkpoint's file name in a mirror, as tlog-tiles serves it.
const CHECKPOINT_FILE: &str = "checkpoint";

/// `invario mirror --from PREFIX --to DIR --vkey VKEY [--key KEY]`.
pub(crate) async fn mirror(from: &str, to: &Path, vkey: &str, key: Option<&str>) -> anyhow::Result<ExitCode> {
    let log_key = VerifierKey::parse(vkey).context("--vkey")?;
    let from = from.trim_end_matches('/');
    std::fs::create_dir_all(to).with_context(|| format!("cannot create --to {}", to.display()))?;
    let held = match read_if_present(&to.join(CHECKPOINT_FILE))? {
        Some(note) => {
            Some(Checkpoint::verify(&note, &log_key).map(|(checkpoint, _)| checkpoint).with_context(
                || format!("{} holds a checkpoint that does not verify with --vkey", to.display()),
            )?)
        }
        None => None,
    };

    let served = fetch_bytes(from, key, &format!("/{CHECKPOINT_FILE}")).await?;
    let checkpoint = match Checkpoint::verify(&served, &log_key) {
        Ok((checkpoint, _)) => checkpoint,
        Err(error) => return Ok(refused(&format!("the served checkpoint does not verify: {error}"), to)),
    };
    if let Some(held) = &held
        && checkpoint.head.size < held.head.size
    {
        let reason =
            format!("the log shrank from {} entries (mirrored) to {}", held.head.size, checkpoint.head.size);
        return Ok(refused(&reason, to));
    }

    // Full tiles and bundles are immutable, as is a partial at one width:
    // what the mirror holds at a path is reused, and checked again with the
    // rest. When that fails, everything is fetched afresh to tell a rewrite
    // on the primary from a damaged file here.
    let mut gathered = gather(from, key, to, checkpoint.head.size, true).await?;
    if check_tiled_log(&checkpoint.head, &gathered.resources).is_err() && gathered.reused > 0 {
        gathered = gather(from, key, to, checkpoint.head.size, false).await?;
    }
    let checked = match check_tiled_log(&checkpoint.head, &gathered.resources) {
        Ok(checked) => checked,
        Err(error) => return Ok(refused(&error.to_string(), to)),
    };
    if let Some(held) = &held
        && let Err(reason) = consistent_with(&checked, held)
    {
        return Ok(refused(&reason, to));
    }
    let fetched: Vec<(&TileResource, &Vec<u8>)> =
        gathered.resources.iter().filter(|(resource, _)| gathered.fetched.contains(resource)).collect();

    for (resource, bytes) in &fetched {
        write_atomically(&to.join(resource.path()), bytes)?;
    }
    write_atomically(&to.join(CHECKPOINT_FILE), &served)?;
    println!(
        "✅ Mirrored {} entries (root {}) into {}: {} resources fetched, {} already held, every one checked against the signed root{}",
        checkpoint.head.size,
        checkpoint.head.root.to_hex(),
        to.display(),
        fetched.len(),
        gathered.reused,
        held.map_or(String::new(), |held| format!(
            "; consistent with the {} entries mirrored before",
            held.head.size
        )),
    );
    Ok(ExitCode::SUCCESS)
}

/// The resources of a tree size, and which of them came over the network.
struct Gathered {
    resources: BTreeMap<TileResource, Vec<u8>>,
    fetched: std::collections::BTreeSet<TileResource>,
    reused: usize,
}

/// Every resource of a tree of `size`: read from the mirror when `reuse`
/// and it holds the path, fetched from the primary otherwise.
async fn gather(
    from: &str,
    key: Option<&str>,
    to: &Path,
    size: u64,
    reuse: bool,
) -> anyhow::Result<Gathered> {
    let mut resources = BTreeMap::new();
    let mut to_fetch = Vec::new();
    for resource in resources_at(size) {
        match if reuse { read_if_present(&to.join(resource.path()))? } else { None } {
            Some(bytes) => {
                resources.insert(resource, bytes);
            }
            None => to_fetch.push(resource),
        }
    }
    let reused = resources.len();
    let fetched: Vec<(TileResource, Vec<u8>)> = futures_util::stream::iter(to_fetch)
        .map(|resource| async move {
            let bytes = fetch_bytes(from, key, &format!("/{}", resource.path())).await?;
            anyhow::Ok((resource, bytes))
        })
        .buffer_unordered(PARALLEL_FETCHES)
        .try_collect()
        .await?;
    let fetched_set = fetched.iter().map(|(resource, _)| *resource).collect();
    resources.extend(fetched);
    Ok(Gathered { resources, fetched: fetched_set, reused })
}

/// `invario verify --mirror DIR --vkey VKEY`: rebuilds the tree from the
/// mirror's files alone and checks it against its signed checkpoint.
pub(crate) fn verify_mirror(dir: &Path, vkey: &str) -> anyhow::Result<ExitCode> {
    let log_key = VerifierKey::parse(vkey).context("--vkey")?;
    if !dir.is_dir() {
        anyhow::bail!("--mirror {} is not a directory", dir.display());
    }
    let Some(note) = read_if_present(&dir.join(CHECKPOINT_FILE))? else {
        return Ok(not_verified("it holds no checkpoint: it is empty or not a mirror", dir));
    };
    let checkpoint = match Checkpoint::verify(&note, &log_key) {
        Ok((checkpoint, _)) => checkpoint,
        Err(error) => return Ok(not_verified(&format!("its checkpoint does not verify: {error}"), dir)),
    };
    let mut resources = BTreeMap::new();
    for resource in resources_at(checkpoint.head.size) {
        if let Some(bytes) = read_if_present(&dir.join(resource.path()))? {
            resources.insert(resource, bytes);
        }
    }
    match check_tiled_log(&checkpoint.head, &resources) {
        Ok(_) => {
            println!(
                "✅ The mirror in {} holds the log's {} entries; every tile and bundle rebuilt and checked: root {} as signed by {}",
                dir.display(),
                checkpoint.head.size,
                checkpoint.head.root.to_hex(),
                log_key.name(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Ok(not_verified(&error.to_string(), dir)),
    }
}

/// Whether the newly checked tree still holds, as its prefix, the tree the
/// mirror signed off last time.
fn consistent_with(checked: &CheckedTiles, held: &Checkpoint) -> Result<(), String> {
    match checked.root_at(held.head.size) {
        Some(root) if root == held.head.root => Ok(()),
        Some(root) => Err(format!(
            "the log was rewritten: its first {} entries now hash to root {}, the checkpoint mirrored before signed {}",
            held.head.size,
            root.to_hex(),
            held.head.root.to_hex()
        )),
        None => Err(format!("the log shrank below the {} entries mirrored before", held.head.size)),
    }
}

fn refused(reason: &str, dir: &Path) -> ExitCode {
    println!("❌ Refused: {reason}. The mirror in {} was left as it was.", dir.display());
    ExitCode::from(1)
}

fn not_verified(reason: &str, dir: &Path) -> ExitCode {
    println!("❌ The mirror in {} does not verify: {reason}", dir.display());
    ExitCode::from(1)
}

fn read_if_present(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes a whole file or nothing: a temporary beside it, then a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".incoming-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot move {} into place", path.display()))
}
