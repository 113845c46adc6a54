//! The directory state store: one file per key under a root directory,
//! replaced atomically (temp file, fsync, rename, fsync the directory).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{check_key, check_prefix, segment_ok, StateStore, StoreError};

/// A directory, possibly on a network volume shared by all members.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    /// Named by a `file://` `state.url` rather than `state.dir` (for errors).
    from_url: bool,
}

impl DirStore {
    /// Opens (creating it when missing) the directory named by `state.dir`.
    pub fn new(root: &Path) -> Result<DirStore, StoreError> {
        Self::open_as(root, false)
    }

    pub(super) fn open_as(root: &Path, from_url: bool) -> Result<DirStore, StoreError> {
        let s = DirStore {
            root: root.to_path_buf(),
            from_url,
        };
        // Fail at start-up, not at the first checkpoint, when the directory
        // cannot be made or is not one.
        fs::create_dir_all(root).map_err(|e| s.io(root, e))?;
        if !root.is_dir() {
            let e = io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
            return Err(s.io(root, e));
        }
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io(&self, path: &Path, error: io::Error) -> StoreError {
        let path = path.to_path_buf();
        match self.from_url {
            false => StoreError::Io { path, error },
            true => StoreError::UrlDirIo { path, error },
        }
    }

    /// Makes `dir` (under the root) and fsyncs each new directory's parent,
    /// so that the entry of a fresh directory survives a power cut too.
    fn make_dirs(&self, dir: &Path) -> Result<(), StoreError> {
        if dir.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        let mut d = dir;
        while d != self.root {
            let Some(parent) = d.parent() else { break };
            sync_dir(parent).map_err(|e| self.io(parent, e))?;
            d = parent;
        }
        Ok(())
    }

    fn walk(&self, dir: &Path, key: &str, out: &mut Vec<String>) -> Result<(), StoreError> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| self.io(dir, e))?;
            let name = entry.file_name();
            // Temp files of an interrupted put (and anything else that is not
            // a key this store writes) are not keys.
            let Some(name) = name.to_str().filter(|n| segment_ok(n).is_ok()) else {
                continue;
            };
            let path = entry.path();
            let child = if key.is_empty() {
                name.to_string()
            } else {
                format!("{key}/{name}")
            };
            // Follows symbolic links, as a reader of the volume would.
            match fs::metadata(&path) {
                Ok(m) if m.is_dir() => self.walk(&path, &child, out)?,
                Ok(m) if m.is_file() => out.push(child),
                Ok(_) => {}
                // Deleted meanwhile by another member.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(&path, e)),
            }
        }
        Ok(())
    }

    /// Writes `value` whole to a temporary file beside `key`'s and syncs it:
    /// (temp file, final path, directory). Temp names are never keys
    /// ([`check_key`]), so a crash mid-write leaves only an ignored file.
    fn write_temp(
        &self,
        key: &str,
        value: &[u8],
    ) -> Result<(PathBuf, PathBuf, PathBuf), StoreError> {
        check_key(key)?;
        let path = self.root.join(key);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        self.make_dirs(&dir)?;
        let name = key.rsplit('/').next().unwrap_or(key);
        // A random suffix: members on different machines share the volume,
        // so a pid alone could collide.
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(value)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(self.io(&tmp, e));
        }
        Ok((tmp, path, dir))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl StateStore for DirStore {
    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        check_key(key)?;
        let path = self.root.join(key);
        match fs::read(&path) {
            Ok(v) => Ok(Some(Bytes::from(v))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        let (tmp, path, dir) = self.write_temp(key, &value)?;
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(self.io(&path, e));
        }
        sync_dir(&dir).map_err(|e| self.io(&dir, e))
    }

    fn put_new(&self, key: &str, value: Bytes) -> Result<bool, StoreError> {
        let (tmp, path, dir) = self.write_temp(key, &value)?;
        // A hard link, unlike a rename, fails when the name exists: the
        // file system settles a race between two members.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => sync_dir(&dir).map(|()| true).map_err(|e| self.io(&dir, e)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = check_prefix(prefix)?;
        let mut out = Vec::new();
        self.walk(&self.root.join(prefix), prefix, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let path = self.root.join(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io(&path, e)),
        }
        let dir = path.parent().unwrap_or(&self.root);
        sync_dir(dir).map_err(|e| self.io(dir, e))
    }

    fn describe(&self) -> String {
        format!("dir {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, DirStore) {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::new(&d.path().join("state")).unwrap();
        (d, s)
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn put_get_list_delete() {
        let (_d, s) = store();
        assert_eq!(s.get("tasks/t/0.ckpt").unwrap(), None);
        assert_eq!(s.list("").unwrap(), Vec::<String>::new());
        s.put("tasks/t/1.ckpt", b("one")).unwrap();
        s.put("tasks/t/0.ckpt", b("zero")).unwrap();
        s.put("tasks2/x", b("x")).unwrap();
        s.put("top", b("t")).unwrap();
        assert_eq!(s.get("tasks/t/0.ckpt").unwrap(), Some(b("zero")));
        assert_eq!(s.get("tasks/t/1.ckpt").unwrap(), Some(b("one")));
        // Sorted, recursive, whole segments: "tasks" is not a prefix of "tasks2".
        assert_eq!(
            s.list("").unwrap(),
            ["tasks/t/0.ckpt", "tasks/t/1.ckpt", "tasks2/x", "top"]
        );
        assert_eq!(
            s.list("tasks").unwrap(),
            ["tasks/t/0.ckpt", "tasks/t/1.ckpt"]
        );
        assert_eq!(s.list("tasks/").unwrap(), s.list("tasks").unwrap());
        assert_eq!(s.list("nothing").unwrap(), Vec::<String>::new());
        s.delete("tasks/t/0.ckpt").unwrap();
        s.delete("tasks/t/0.ckpt").unwrap(); // absent: not an error
        s.delete("never/was").unwrap();
        assert_eq!(s.get("tasks/t/0.ckpt").unwrap(), None);
        assert_eq!(s.list("tasks").unwrap(), ["tasks/t/1.ckpt"]);
        assert_eq!(s.describe(), format!("dir {}", s.root().display()));
    }

    #[test]
    fn nested_keys_create_directories() {
        let (_d, s) = store();
        s.put("a/b/c/d.ckpt", b("deep")).unwrap();
        assert!(s.root().join("a/b/c").is_dir());
        assert_eq!(
            fs::read(s.root().join("a/b/c/d.ckpt")).unwrap(),
            b"deep".to_vec()
        );
    }

    #[test]
    fn overwrite_replaces_whole_and_leaves_no_temp_file() {
        let (_d, s) = store();
        s.put("k/v", Bytes::from(vec![1u8; 100_000])).unwrap();
        s.put("k/v", b("short")).unwrap();
        assert_eq!(s.get("k/v").unwrap(), Some(b("short")));
        let names: Vec<_> = fs::read_dir(s.root().join("k"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["v"]);
    }

    #[test]
    fn temp_file_of_a_crashed_put_is_ignored() {
        let (_d, s) = store();
        s.put("tasks/t/3.ckpt", b("old")).unwrap();
        // What a put that died between write and rename leaves behind: a
        // half-written temp file beside the old object, and (first put of a
        // key) a temp file with no object.
        let dir = s.root().join("tasks/t");
        fs::write(dir.join(".3.ckpt.00000000deadbeef.tmp"), b"new but ha").unwrap();
        fs::write(dir.join(".4.ckpt.0000000000000001.tmp"), b"x").unwrap();
        assert_eq!(s.get("tasks/t/3.ckpt").unwrap(), Some(b("old")));
        assert_eq!(s.get("tasks/t/4.ckpt").unwrap(), None);
        assert_eq!(s.list("").unwrap(), ["tasks/t/3.ckpt"]);
        // The next put of the key still lands.
        s.put("tasks/t/3.ckpt", b("new")).unwrap();
        assert_eq!(s.get("tasks/t/3.ckpt").unwrap(), Some(b("new")));
    }

    #[test]
    fn bad_keys_are_refused() {
        let (_d, s) = store();
        for k in [
            "",
            "/abs",
            "a//b",
            "a/",
            "../up",
            "a/../b",
            ".",
            "a/./b",
            "a/..",
            ".x.tmp",
            "a/.b.0123456789abcdef.tmp",
            "sp ace",
            "back\\slash",
            "é",
        ] {
            let e = s.put(k, b("x")).unwrap_err();
            assert!(matches!(e, StoreError::Key { .. }), "{k:?}: {e}");
            assert!(s.get(k).is_err(), "{k:?}");
        }
        assert!(s.list("../x").is_err());
        let long = "x".repeat(201);
        assert!(s.put(&long, b("x")).is_err());
        s.put(&"x".repeat(200), b("x")).unwrap();
        s.put("Aa0._-=@+,", b("x")).unwrap();
        // A leading dot alone is fine (a Kafka topic may begin with one).
        s.put(".topic/0/.a.ckpt", b("x")).unwrap();
        assert_eq!(s.get(".topic/0/.a.ckpt").unwrap(), Some(b("x")));
    }

    #[test]
    fn io_errors_name_the_config_key() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        fs::write(&file, b"x").unwrap();
        let e = DirStore::new(&file).unwrap_err().to_string();
        assert!(
            e.contains("`state.dir`") && e.contains(&*file.to_string_lossy()),
            "{e}"
        );
    }
}
