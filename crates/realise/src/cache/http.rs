//! `http://` and `https://` binary caches, through drv's one HTTP client
//! ([`crate::fetch`]'s: rustls, the platform's certificates). Uploads are
//! `PUT`s, as Nix's `http` store does.

use std::fs;
use std::io::Read;
use std::path::Path;

use reqwest::blocking::{Body, Client};
use reqwest::StatusCode;

use super::{is_absolute_url, refuse_local_file, response_document, BinaryCache, CacheError, Result};
use crate::fetch::{error_chain, http_client, FetchOptions};

/// A cache served over HTTP.
pub struct HttpCache {
    url: String,
    client: Client,
}

fn client(url: &str) -> Result<Client> {
    let options = FetchOptions { connect_timeout: std::time::Duration::from_secs(5), ..FetchOptions::default() };
    http_client(&options).map_err(|message| CacheError::Transport { url: url.to_owned(), message })
}

/// `GET url`: the response, `None` for the answers caches give for a
/// file they do not have.
fn get_url(client: &Client, url: &str) -> Result<Option<reqwest::blocking::Response>> {
    let resp = client
        .get(url)
        .send()
        .map_err(|e| CacheError::Transport { url: url.to_owned(), message: error_chain(&e) })?;
    match resp.status() {
        s if s.is_success() => Ok(Some(resp)),
        // Nix's caches answer a missing narinfo with 404, S3 with 403.
        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => Ok(None),
        s => Err(CacheError::HttpStatus { url: url.to_owned(), status: s.as_u16() }),
    }
}

impl HttpCache {
    pub fn new(url: &str) -> Result<Self> {
        Ok(Self { url: url.trim_end_matches('/').to_owned(), client: client(url)? })
    }

    /// A stream of the file at an absolute `http(s)://` URL, for a
    /// narinfo of another kind of cache that names its NAR so.
    pub(crate) fn get_absolute(url: &str) -> Result<Box<dyn Read + Send>> {
        match get_url(&client(url)?, url)? {
            Some(resp) => Ok(Box::new(resp)),
            None => Err(CacheError::NotFound { url: url.to_owned() }),
        }
    }
}

impl BinaryCache for HttpCache {
    fn url(&self) -> &str {
        &self.url
    }

    /// Read up to `limit` bytes while it streams (a body without end
    /// costs `limit` bytes, not memory).
    fn document(&self, relative: &str, what: &'static str, limit: u64) -> Result<Option<Vec<u8>>> {
        let url = self.location(relative);
        let Some(resp) = get_url(&self.client, &url)? else { return Ok(None) };
        response_document(resp, url, what, limit).map(Some)
    }

    fn open_file(&self, relative: &str) -> Result<Box<dyn Read + Send>> {
        refuse_local_file(relative)?;
        let url = if is_absolute_url(relative) { relative.to_owned() } else { self.location(relative) };
        match get_url(&self.client, &url)? {
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
