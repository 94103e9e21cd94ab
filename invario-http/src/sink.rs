//! The checkpoint sink: a directory outside the database (another volume or
//! host) holding every signed checkpoint as an immutable file per tree size,
//! `<size>.checkpoint`, and the latest as `checkpoint`. Files are written to a
//! temporary name, fsynced and renamed (the directory fsynced too), so a crash
//! leaves the old file or the new one, never half of one; a per-size file is
//! never replaced.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use invario_core::note::same_signed_text;

/// The latest checkpoint's file name.
pub const LATEST_FILE: &str = "checkpoint";

/// Why the sink could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A file operation failed.
    #[error("checkpoint directory {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A different note is stored for this size already: two histories were signed.
    #[error("{path} holds a different checkpoint for tree size {tree_size}: refusing to replace it")]
    Equivocation {
        /// The existing file.
        path: PathBuf,
        /// Its tree size.
        tree_size: u64,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io { path: path.to_path_buf(), source }
}

/// A checkpoint directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    dir: PathBuf,
}

impl Sink {
    /// The sink in `dir`, created if missing.
    pub fn open(dir: &Path) -> Result<Sink, SinkError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(Sink { dir: dir.to_path_buf() })
    }

    /// The sink of ledger `ledger`: this one for `default` (so a sink from
    /// before ledgers goes on as that ledger's), else `ledgers/<name>/` inside
    /// this folder, created if missing.
    pub fn for_ledger(&self, ledger: &invario_core::LedgerName) -> Result<Sink, SinkError> {
        if ledger.is_default() {
            return Ok(self.clone());
        }
        Sink::open(&self.dir.join("ledgers").join(ledger.as_str()))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the checkpoint at `tree_size`.
    pub fn size_path(&self, tree_size: u64) -> PathBuf {
        self.dir.join(format!("{tree_size}.checkpoint"))
    }

    /// The latest checkpoint's bytes, if one was written.
    pub fn read_latest(&self) -> Result<Option<Vec<u8>>, SinkError> {
        let path = self.dir.join(LATEST_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io(&path)(error)),
        }
    }

    /// Stores a newly signed checkpoint: its per-size file (kept if it holds
    /// the same checkpoint, refused if another), then the latest.
    pub fn write(&self, tree_size: u64, note: &str) -> Result<(), SinkError> {
        let path = self.size_path(tree_size);
        match std::fs::read(&path) {
            Ok(existing) if same_signed_text(&existing, note.as_bytes()) => {}
            Ok(_) => return Err(SinkError::Equivocation { path, tree_size }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => self.replace(&path, note)?,
            Err(error) => return Err(io(&path)(error)),
        }
        self.replace(&self.dir.join(LATEST_FILE), note)
    }

    /// Writes `path` atomically: a temporary file, fsynced, renamed over it, the directory fsynced.
    fn replace(&self, path: &Path, note: &str) -> Result<(), SinkError> {
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let mut file = File::create(&temporary).map_err(io(&temporary))?;
        file.write_all(note.as_bytes()).map_err(io(&temporary))?;
        file.sync_all().map_err(io(&temporary))?;
        drop(file);
        std::fs::rename(&temporary, path).map_err(io(path))?;
        File::open(&self.dir).and_then(|dir| dir.sync_all()).map_err(io(&self.dir))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use super::*;

    fn temporary_dir(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        std::env::temp_dir().join(format!("invario-sink-{name}-{nanos}"))
    }

    #[test]
    fn checkpoints_are_kept_per_size_and_never_replaced_by_another_note() {
        let dir = temporary_dir("sizes");
        let sink = Sink::open(&dir).unwrap();
        assert_eq!(sink.read_latest().unwrap(), None);
        sink.write(3, "three\n").unwrap();
        sink.write(5, "five\n").unwrap();
        assert_eq!(sink.read_latest().unwrap().unwrap(), b"five\n");
        assert_eq!(std::fs::read(sink.size_path(3)).unwrap(), b"three\n");
        sink.write(5, "five\n").unwrap();
        assert!(matches!(sink.write(5, "another five\n"), Err(SinkError::Equivocation { tree_size: 5, .. })));
        assert_eq!(std::fs::read(sink.size_path(5)).unwrap(), b"five\n", "the first note for a size stays");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_same_checkpoint_with_other_cosignatures_is_not_an_equivocation() {
        use invario_core::note::{ALGORITHM_COSIGNATURE, ALGORITHM_ED25519, Note, SignerKey};

        let dir = temporary_dir("cosigned");
        let sink = Sink::open(&dir).unwrap();
        let log = SignerKey::from_seed("log.example/ledger", ALGORITHM_ED25519, [1; 32]).unwrap();
        let witness = SignerKey::from_seed("witness.example/w1", ALGORITHM_COSIGNATURE, [2; 32]).unwrap();
        let text = "log.example/ledger\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let signed = Note::sign(text, &log).unwrap().to_text();
        let cosignature = invario_core::witness::cosign(text, &witness, 1_700_000_000).unwrap();
        let cosigned = format!("{signed}{}", cosignature.line());
        sink.write(5, &signed).unwrap();
        sink.write(5, &cosigned).unwrap();
        assert_eq!(
            sink.read_latest().unwrap().unwrap(),
            cosigned.as_bytes(),
            "the latest is what was served"
        );
        assert_eq!(
            std::fs::read(sink.size_path(5)).unwrap(),
            signed.as_bytes(),
            "the first note for a size stays"
        );
        let other = Note::sign(&text.replace("AAAA=", "AAAB="), &log).unwrap().to_text();
        assert!(matches!(sink.write(5, &other), Err(SinkError::Equivocation { tree_size: 5, .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
