//! Private key files: created with mode 0600, never overwritten, read back strictly.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use invario_core::note::SignerKey;

/// Writes `text` to a new file readable only by its owner; refuses an existing file.
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("{} exists already: a key is never overwritten (choose another --out)", path.display())
        }
        Err(error) => return Err(error).with_context(|| format!("cannot create {}", path.display())),
    };
    file.write_all(format!("{text}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(())
}

/// Reads a private key file written by `checkpoint-key generate`.
pub(crate) fn read_private(path: &Path) -> anyhow::Result<SignerKey> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "cannot read the key file {}: permission denied — give this process's user read access \
             (the Docker image runs as uid 10001: `chown 10001` the file and its folder)",
            path.display()
        ),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read the key file {}", path.display()));
        }
    };
    SignerKey::parse(&text).with_context(|| {
        format!("{} is not a private key from `invario checkpoint-key generate`", path.display())
    })
}
