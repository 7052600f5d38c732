//! Noticing that files changed, by looking at them now and then: what works for
//! an edited file, a file replaced by a rename, and a Kubernetes ConfigMap or
//! Secret volume (whose files are symlinks swapped at once), without a
//! platform file-notification API.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Files and how they looked when last seen.
pub struct Watch {
    files: Vec<(PathBuf, Option<Stamp>)>,
    every: Duration,
}

/// Modification time and length: either moves when a file is rewritten.
type Stamp = (SystemTime, u64);

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Watch {
    /// Watches `files` as they are now, looking `every` so often.
    pub fn new(files: impl IntoIterator<Item = PathBuf>, every: Duration) -> Self {
        Self {
            files: files
                .into_iter()
                .map(|path| {
                    let seen = stamp(&path);
                    (path, seen)
                })
                .collect(),
            every,
        }
    }

    /// Resolves once any file looks different from when last seen (also when
    /// it appears or disappears). Several writes within one look are one change.
    pub async fn changed(&mut self) {
        loop {
            tokio::time::sleep(self.every).await;
            let mut changed = false;
            for (path, seen) in &mut self.files {
                let now = stamp(path);
                if now != *seen {
                    *seen = now;
                    changed = true;
                }
            }
            if changed {
                return;
            }
        }
    }
}
