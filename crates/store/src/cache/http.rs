//! `http://` and `https://` binary caches, through drv's one HTTP client
//! ([`crate::fetch`]'s: rustls, the platform's certificates). Uploads are
//! `PUT`s, as Nix's `http` store does.

use std::fs;
use std::io::Read;
use std::path::Path;

use reqwest::blocking::{Body, Client};
use reqwest::StatusCode;

use super::{BinaryCache, CacheError, CacheInfo, Result, CACHE_INFO_FILE};
use crate::fetch::{error_chain, http_client, FetchOptions};
use crate::formats::path::StorePath;

/// A cache served over HTTP.
pub struct HttpCache {
    url: String,
    client: Client,
}

impl HttpCache {
    pub fn new(url: &str) -> Result<Self> {
        let options = FetchOptions { connect_timeout: std::time::Duration::from_secs(5), ..FetchOptions::default() };
        let client = http_client(&options).map_err(|message| CacheError::Transport { url: url.to_owned(), message })?;
        Ok(Self { url: url.trim_end_matches('/').to_owned(), client })
    }

    fn get(&self, relative: &str) -> Result<Option<reqwest::blocking::Response>> {
        let url = self.location(relative);
        let resp = self
            .client
            .get(&url)
            .send()
            .map_err(|e| CacheError::Transport { url: url.clone(), message: error_chain(&e) })?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            // Nix's caches answer a missing narinfo with 404, S3 with 403.
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => Ok(None),
            s => Err(CacheError::HttpStatus { url, status: s.as_u16() }),
        }
    }

    fn get_bytes(&self, relative: &str) -> Result<Option<Vec<u8>>> {
        let Some(resp) = self.get(relative)? else { return Ok(None) };
        let url = self.location(relative);
        let bytes = resp.bytes().map_err(|e| CacheError::Transport { url, message: error_chain(&e) })?;
        Ok(Some(bytes.to_vec()))
    }
}

impl BinaryCache for HttpCache {
    fn url(&self) -> &str {
        &self.url
    }

    fn cache_info(&self) -> Result<Option<CacheInfo>> {
        Ok(self
            .get_bytes(CACHE_INFO_FILE)?
            .map(|b| CacheInfo::parse(&String::from_utf8_lossy(&b))))
    }

    fn narinfo_text(&self, path: &StorePath) -> Result<Option<Vec<u8>>> {
        self.get_bytes(&format!("{}.narinfo", path.hash_part()))
    }

    fn open_file(&self, relative: &str) -> Result<Box<dyn Read + Send>> {
        match self.get(relative)? {
            Some(resp) => Ok(Box::new(resp)),
            None => Err(CacheError::NotFound { url: self.location(relative) }),
        }
    }

    fn upload(&self, relative: &str, file: &Path, content_type: &str) -> Result<()> {
        let url = self.location(relative);
        let f = fs::File::open(file).map_err(|e| CacheError::io(file, e))?;
        let len = f.metadata().map_err(|e| CacheError::io(file, e))?.len();
        let resp = self
            .client
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(Body::sized(f, len))
            .send()
            .map_err(|e| CacheError::Transport { url: url.clone(), message: error_chain(&e) })?;
        if !resp.status().is_success() {
            return Err(CacheError::HttpStatus { url, status: resp.status().as_u16() });
        }
        Ok(())
    }
}
