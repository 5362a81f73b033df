//! `file:///dir`: a binary cache in a local directory, as `nix copy --to
//! file://...` writes it.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::{is_absolute_url, open_absolute, read_document, BinaryCache, CacheError, Result};

/// A cache whose files are under one directory.
pub struct FileCache {
    url: String,
    root: PathBuf,
}

impl FileCache {
    pub fn new(root: &Path) -> Self {
        Self { url: format!("file://{}", root.display()), root: root.to_owned() }
    }

    /// The file at `relative`, which must stay inside the cache: a narinfo
    /// whose URL says `../../etc/shadow` reads nothing outside it.
    fn file(&self, relative: &str) -> Result<PathBuf> {
        let rel = Path::new(relative);
        if relative.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(CacheError::NotFound { url: self.location(relative) });
        }
        Ok(self.root.join(rel))
    }

    /// A small document of the cache, read up to `limit` bytes (a named
    /// pipe or a huge file in the cache costs `limit`, not memory).
    fn read_if_present(&self, relative: &str, what: &'static str, limit: u64) -> Result<Option<Vec<u8>>> {
        let path = self.file(relative)?;
        match fs::File::open(&path) {
            Ok(f) => read_document(f, &self.location(relative), what, limit).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io(&path, e)),
        }
    }
}

impl BinaryCache for FileCache {
    fn url(&self) -> &str {
        &self.url
    }

    fn document(&self, relative: &str, what: &'static str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.read_if_present(relative, what, limit)
    }

    fn open_file(&self, relative: &str) -> Result<Box<dyn Read + Send>> {
        if is_absolute_url(relative) {
            return open_absolute(relative);
        }
        let path = self.file(relative)?;
        match fs::File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CacheError::NotFound { url: self.location(relative) }),
            Err(e) => Err(CacheError::io(&path, e)),
        }
    }

    fn upload(&self, relative: &str, file: &Path, _content_type: &str) -> Result<()> {
        let dest = self.file(relative)?;
        let dir = dest.parent().expect("a file in the cache has a parent");
        fs::create_dir_all(dir).map_err(|e| CacheError::io(dir, e))?;
        // Copy to a sibling, then rename: a reader never sees half a file.
        let tmp = tempfile::Builder::new()
            .prefix(".upload-")
            .tempfile_in(dir)
            .map_err(|e| CacheError::io(dir, e))?;
        fs::copy(file, tmp.path()).map_err(|e| CacheError::io(file, e))?;
        tmp.persist(&dest).map_err(|e| CacheError::io(&dest, e.error))?;
        Ok(())
    }
}
