//! Where task checkpoints live: a directory (placeholder until the object
//! store backends land).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

/// Where task checkpoints live. Keys are relative paths with `/`.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError>;
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    fn describe(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("config key `state.dir`: {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

pub fn open(state: &crate::config::StateConfig) -> Result<Arc<dyn StateStore>, StoreError> {
    Ok(Arc::new(DirStore::new(&state.dir)?))
}

#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: &Path) -> Result<DirStore, StoreError> {
        std::fs::create_dir_all(root).map_err(|error| StoreError::Io {
            path: root.to_path_buf(),
            error,
        })?;
        Ok(DirStore {
            root: root.to_path_buf(),
        })
    }
}

impl StateStore for DirStore {
    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let p = self.root.join(key);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StoreError::Io { path: p, error }),
        }
    }
    fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        use std::io::Write;
        let p = self.root.join(key);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| StoreError::Io { path, error }
        };
        let parent = p.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        let tmp = p.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&value).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(io(&p))?;
        std::fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(io(&parent))?;
        Ok(())
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.join(prefix)];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_none_or(|x| x != "tmp") {
                    if let Ok(rel) = p.strip_prefix(&self.root) {
                        out.push(rel.to_string_lossy().replace('\\', "/"));
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let p = self.root.join(key);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::Io { path: p, error: e })
            }
            _ => Ok(()),
        }
    }
    fn describe(&self) -> String {
        format!("dir {}", self.root.display())
    }
}

/// Whether `[state]` names the directory `state.dir` (no `url`).
pub fn is_dir(_state: &crate::config::StateConfig) -> bool {
    true
}
