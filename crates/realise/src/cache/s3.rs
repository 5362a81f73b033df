//! `s3://BUCKET[/PREFIX]?PARAMS`: a binary cache in S3-compatible object
//! storage, laid out as every other cache (`nix-cache-info`, narinfos,
//! `nar/…`), under `PREFIX/` when one is given.
//!
//! Requests are signed with AWS Signature Version 4 by `rusty-s3` (sans-IO:
//! it signs, drv's one HTTP client sends) and retried with back-off when the
//! server throttles (429, `SlowDown`), fails (5xx) or the connection breaks.
//! The parameters are Nix's (the manual's "S3 Binary Cache Store" section):
//!
//! | parameter | meaning | default |
//! |---|---|---|
//! | `endpoint` | the server, a full URL (`http://127.0.0.1:8333`) or a host | AWS's endpoint for `region` |
//! | `region` | the region requests are signed for | `us-east-1` |
//! | `profile` | the credentials' profile in the shared files | `AWS_PROFILE`, else `default` |
//! | `addressing-style` | `path` (`ENDPOINT/BUCKET/KEY`), `virtual` (`BUCKET.HOST/KEY`) or `auto` | `auto`: path-style with an `endpoint`, virtual-host-style on AWS |
//! | `multipart-upload` | upload large NARs in parts | `false` |
//! | `multipart-chunk-size` | bytes a part (at least 5 MiB, S3's minimum) | 5 MiB |
//! | `multipart-threshold` | NARs of at least this many bytes go in parts | 100 MiB |
//! | `storage-class` | `x-amz-storage-class` of uploaded objects | the bucket's |
//!
//! Credentials come from the standard places, in the AWS SDKs' order: the
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`
//! variables (unless `profile` names a profile), then the profile in the
//! shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
//! `~/.aws/credentials`) and config file (`AWS_CONFIG_FILE`, else
//! `~/.aws/config`). With none, requests go unsigned (a public bucket).
//! Neither the secret nor a signed URL ever appears in a message: errors
//! name objects as `s3://BUCKET/KEY`.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::{Body, Client, RequestBuilder, Response};
use reqwest::StatusCode;
use rusty_s3::actions::CreateMultipartUpload;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::{
    is_absolute_url, open_absolute, parallel_map, refuse_local_file, response_document, BinaryCache, CacheError, Result, CACHE_INFO_FILE,
};
use crate::fetch::{error_chain, FetchOptions};

/// S3's smallest part (but the last), and Nix's default part size.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest number of parts in one upload.
const MAX_PARTS: u64 = 10_000;
/// How long a signed request stays valid: only as long as it takes to send.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Largest error document read from the server.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// How a request is retried: `attempts` in all, waiting `first_delay`
/// before the second and twice as long before each further one.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl Default for RetryPolicy {
    /// Six attempts over about 8 seconds: what it takes a SeaweedFS or
    /// MinIO cluster to notice a lost volume server and answer from a replica.
    fn default() -> Self {
        Self { attempts: 6, first_delay: Duration::from_millis(250) }
    }
}

/// Where objects are addressed: `ENDPOINT/BUCKET/KEY` or `BUCKET.HOST/KEY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressingStyle {
    Auto,
    Path,
    Virtual,
}

/// An `s3://` cache URL, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// The key prefix, empty or ending in `/`.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub profile: Option<String>,
    pub addressing_style: AddressingStyle,
    pub multipart_upload: bool,
    pub multipart_chunk_size: u64,
    pub multipart_threshold: u64,
    pub storage_class: Option<String>,
}

impl S3Url {
    /// Parse `s3://BUCKET[/PREFIX][?PARAMS]`; an unknown parameter or a bad
    /// value is an error naming it.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |problem: String| CacheError::BadUrl { url: url.to_owned(), problem };
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("not an s3:// URL".into()))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket: write s3://BUCKET[/PREFIX]".into()));
        }
        let prefix = prefix.trim_matches('/');
        let mut parsed = S3Url {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
            endpoint: None,
            region: "us-east-1".into(),
            profile: None,
            addressing_style: AddressingStyle::Auto,
            multipart_upload: false,
            multipart_chunk_size: MIN_PART_SIZE,
            multipart_threshold: 100 * 1024 * 1024,
            storage_class: None,
        };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            let size = |v: &str| v.parse::<u64>().map_err(|_| bad(format!("{key}={v:?} is not a number of bytes")));
            match &*key {
                "endpoint" => parsed.endpoint = Some(value),
                "region" => parsed.region = value,
                "profile" => parsed.profile = Some(value),
                "addressing-style" => {
                    parsed.addressing_style = match &*value {
                        "auto" => AddressingStyle::Auto,
                        "path" => AddressingStyle::Path,
                        "virtual" => AddressingStyle::Virtual,
                        v => return Err(bad(format!("addressing-style={v:?}: use auto, path or virtual"))),
                    }
                }
                "multipart-upload" => {
                    parsed.multipart_upload = match &*value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        v => return Err(bad(format!("multipart-upload={v:?}: use true or false"))),
                    }
                }
                "multipart-chunk-size" => {
                    parsed.multipart_chunk_size = size(&value)?;
                    if parsed.multipart_chunk_size < MIN_PART_SIZE {
                        return Err(bad(format!("multipart-chunk-size={value}: S3's smallest part is {MIN_PART_SIZE} bytes")));
                    }
                }
                "multipart-threshold" => parsed.multipart_threshold = size(&value)?,
                "storage-class" => parsed.storage_class = Some(value),
                // Nix's settings of the S3 store that only tune Nix's own SDK.
                "scheme" | "buffer-size" | "narinfo-compression" | "ls-compression" | "log-compression" => {}
                other => return Err(bad(format!("unknown parameter {other:?} of an s3:// cache"))),
            }
        }
        Ok(parsed)
    }

    /// The URL shown in messages: bucket and prefix, no parameters.
    pub fn display(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix).trim_end_matches('/').to_owned()
    }

    fn bucket(&self) -> Result<Bucket> {
        let bad = |problem: String| CacheError::BadUrl { url: self.display(), problem };
        let endpoint = match &self.endpoint {
            Some(e) if e.contains("://") => e.clone(),
            Some(host) => format!("https://{host}"),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        };
        let endpoint: url::Url = endpoint.parse().map_err(|e| bad(format!("endpoint {endpoint:?}: {e}")))?;
        let style = match self.addressing_style {
            AddressingStyle::Path => UrlStyle::Path,
            AddressingStyle::Virtual => UrlStyle::VirtualHost,
            // As Nix and the AWS SDKs: an S3-compatible server (named by
            // `endpoint`) rarely has a wildcard DNS entry; AWS does, and
            // only a bucket name without dots fits its certificate.
            AddressingStyle::Auto if self.endpoint.is_some() || self.bucket.contains('.') => UrlStyle::Path,
            AddressingStyle::Auto => UrlStyle::VirtualHost,
        };
        Bucket::new(endpoint, style, self.bucket.clone(), self.region.clone())
            .map_err(|e| bad(format!("bucket {:?} at {:?}: {e}", self.bucket, self.endpoint)))
    }
}

/// The credentials for `profile` (see the module's documentation for the
/// order); `None` means unsigned requests.
pub fn credentials(profile: Option<&str>) -> Result<Option<Credentials>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if profile.is_none() {
        if let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Some(match env("AWS_SESSION_TOKEN") {
                Some(token) => Credentials::new_with_token(key, secret, token),
                None => Credentials::new(key, secret),
            }));
        }
    }
    let named = profile.map(str::to_owned).or_else(|| env("AWS_PROFILE"));
    let name = named.clone().unwrap_or_else(|| "default".into());
    let home = env("HOME").map(PathBuf::from).unwrap_or_default();
    let credentials_file = env("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from).unwrap_or_else(|| home.join(".aws/credentials"));
    let config_file = env("AWS_CONFIG_FILE").map(PathBuf::from).unwrap_or_else(|| home.join(".aws/config"));
    // The credentials file names a section by the profile; the config file
    // says `[profile NAME]`, but `[default]` for the default one.
    let config_section = if name == "default" { name.clone() } else { format!("profile {name}") };
    for (file, section) in [(&credentials_file, &name), (&config_file, &config_section)] {
        let Some(ini) = load_ini(file)? else { continue };
        let Some(props) = ini.section(Some(section.as_str())) else { continue };
        let (key, secret) = (props.get("aws_access_key_id"), props.get("aws_secret_access_key"));
        if let (Some(key), Some(secret)) = (key, secret) {
            return Ok(Some(match props.get("aws_session_token") {
                Some(token) => Credentials::new_with_token(key, secret, token),
                None => Credentials::new(key, secret),
            }));
        }
    }
    match named {
        Some(profile) => Err(CacheError::NoCredentials {
            profile,
            files: format!("{} or {}", credentials_file.display(), config_file.display()),
        }),
        None => Ok(None),
    }
}

fn load_ini(path: &Path) -> Result<Option<ini::Ini>> {
    match ini::Ini::load_from_file(path) {
        Ok(ini) => Ok(Some(ini)),
        Err(ini::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(ini::Error::Io(e)) => Err(CacheError::io(path, e)),
        // Only the position: the message could quote a secret.
        Err(ini::Error::Parse(e)) => Err(CacheError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("malformed at line {}, column {}", e.line, e.col)),
        )),
    }
}

/// A cache in an S3 bucket.
pub struct S3Cache {
    url: String,
    config: S3Url,
    bucket: Bucket,
    credentials: Option<Credentials>,
    client: Client,
    retry: RetryPolicy,
}

impl S3Cache {
    /// Open `s3://…` with the credentials found as [`credentials`] says.
    pub fn new(url: &str) -> Result<Self> {
        let config = S3Url::parse(url)?;
        let credentials = credentials(config.profile.as_deref())?;
        Self::with_credentials(config, credentials)
    }

    pub fn with_credentials(config: S3Url, credentials: Option<Credentials>) -> Result<Self> {
        let bucket = config.bucket()?;
        let url = config.display();
        let options = FetchOptions { connect_timeout: Duration::from_secs(5), ..FetchOptions::default() };
        let mut builder = crate::fetch::http_client_builder(&options);
        // RFC 6761: a `*.localhost` name is the loopback interface, which
        // is what virtual-host addressing of a local server needs.
        if let Some(host) = bucket.base_url().host_str().filter(|h| h.ends_with(".localhost")) {
            let port = bucket.base_url().port_or_known_default().unwrap_or(80);
            builder = builder.resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        }
        let client = builder.build().map_err(|e| CacheError::Transport { url: url.clone(), message: error_chain(&e) })?;
        Ok(Self { url, config, bucket, credentials, client, retry: RetryPolicy::default() })
    }

    /// Retry with `retry` instead of the default policy (the tests' short
    /// delays).
    #[cfg(test)]
    fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn key(&self, relative: &str) -> String {
        format!("{}{relative}", self.config.prefix)
    }

    /// Send the request `make` builds (signed afresh each time), retrying
    /// what a busy or failing server answers. Returns the last response
    /// whatever its status; `Err` only when no response came.
    fn send(&self, relative: &str, make: &dyn Fn() -> Result<RequestBuilder>) -> Result<Response> {
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            let outcome = make()?.send();
            // A busy or failing server (throttling, 5xx, a connection cut)
            // gets the whole policy; one that cannot be reached at all (no
            // server, a connect timeout) one more try: a cache that is down
            // must not hold every build up for the policy's seconds.
            let attempts = match &outcome {
                Ok(resp) if resp.status().is_server_error() || resp.status() == StatusCode::TOO_MANY_REQUESTS => self.retry.attempts,
                Ok(_) => 1,
                Err(e) if e.is_connect() || e.is_timeout() => self.retry.attempts.min(2),
                Err(e) if e.is_request() || e.is_body() => self.retry.attempts,
                Err(_) => 1,
            };
            if attempt >= attempts {
                return outcome.map_err(|e| CacheError::Transport {
                    url: self.location(relative),
                    // Without the URL: a signed URL carries the key id.
                    message: error_chain(&e.without_url()),
                });
            }
            std::thread::sleep(delay);
            delay *= 2;
            attempt += 1;
        }
    }

    /// `GET` an object: `None` when the bucket does not have it.
    fn get(&self, relative: &str) -> Result<Option<Response>> {
        let key = self.key(relative);
        let resp = self.send(relative, &|| {
            Ok(self.client.get(self.bucket.get_object(self.credentials.as_ref(), &key).sign(SIGNATURE_LIFETIME)))
        })?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            StatusCode::NOT_FOUND => {
                // A missing bucket (a typo in the URL) is not a cache that
                // lacks every path: say so rather than build everything.
                let e = self.refusal(relative, resp);
                match &e {
                    CacheError::S3Refused { code, .. } if code == "NoSuchBucket" => Err(e),
                    _ => Ok(None),
                }
            }
            // A public bucket that does not let anyone list it says 403 for
            // a missing key. Its root document must be readable, though: a
            // 403 there means a private bucket and no credentials.
            StatusCode::FORBIDDEN if self.credentials.is_none() && relative != CACHE_INFO_FILE => Ok(None),
            _ => Err(self.refusal(relative, resp)),
        }
    }

    /// The error an unsuccessful answer means, with S3's error code.
    fn refusal(&self, relative: &str, resp: Response) -> CacheError {
        let status = resp.status().as_u16();
        let body = crate::bounded::read_bounded(resp, ERROR_BODY_LIMIT)
            .ok()
            .and_then(|b| match b {
                crate::bounded::Bounded::Complete(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                crate::bounded::Bounded::TooLarge => None,
            })
            .unwrap_or_default();
        // Only `Code` and `Message`: other elements of an S3 error
        // (`StringToSign`, `AWSAccessKeyId`) would echo what was signed.
        let element = |name: &str| {
            let start = body.find(&format!("<{name}>"))? + name.len() + 2;
            let end = body[start..].find(&format!("</{name}>"))? + start;
            Some(body[start..end].to_owned())
        };
        let mut message = element("Message").unwrap_or_default();
        if status == 403 && self.credentials.is_none() {
            message.push_str(" (drv found no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or `profile=` with ~/.aws/credentials)");
        }
        CacheError::S3Refused { url: self.location(relative), status, code: element("Code").unwrap_or_default(), message }
    }

    /// A signed request of `action`, which creates an object (`PUT` or a
    /// multipart upload's `POST`): with its content type, and the storage
    /// class (a signed header) if one is set.
    fn creating<'a, A: S3Action<'a>>(&self, mut action: A, content_type: &str) -> RequestBuilder {
        if let Some(class) = &self.config.storage_class {
            action.headers_mut().insert("x-amz-storage-class", class.clone());
        }
        let method = match A::METHOD {
            rusty_s3::Method::Post => reqwest::Method::POST,
            _ => reqwest::Method::PUT,
        };
        let mut request =
            self.client.request(method, action.sign(SIGNATURE_LIFETIME)).header(reqwest::header::CONTENT_TYPE, content_type);
        if let Some(class) = &self.config.storage_class {
            request = request.header("x-amz-storage-class", class);
        }
        request
    }

    fn put_whole(&self, relative: &str, file: &Path, len: u64, content_type: &str) -> Result<()> {
        let key = self.key(relative);
        let resp = self.send(relative, &|| {
            let f = fs::File::open(file).map_err(|e| CacheError::io(file, e))?;
            let action = self.bucket.put_object(self.credentials.as_ref(), &key);
            Ok(self.creating(action, content_type).body(Body::sized(f, len)))
        })?;
        if !resp.status().is_success() {
            return Err(self.refusal(relative, resp));
        }
        Ok(())
    }

    /// Upload in parts, four at once; the upload is aborted on failure, so
    /// no parts are left to pay for (a killed process leaves them until
    /// the bucket's lifecycle rule for incomplete uploads removes them).
    fn put_multipart(&self, relative: &str, file: &Path, len: u64, content_type: &str) -> Result<()> {
        let key = self.key(relative);
        let creds = self.credentials.as_ref();
        let resp = self.send(relative, &|| {
            Ok(self.creating(self.bucket.create_multipart_upload(creds, &key), content_type))
        })?;
        if !resp.status().is_success() {
            return Err(self.refusal(relative, resp));
        }
        let body = resp.text().map_err(|e| CacheError::Transport { url: self.location(relative), message: error_chain(&e.without_url()) })?;
        let created = CreateMultipartUpload::parse_response(&body).map_err(|e| CacheError::S3Refused {
            url: self.location(relative),
            status: 200,
            code: "MalformedResponse".into(),
            message: format!("CreateMultipartUpload: {e}"),
        })?;
        let upload_id = created.upload_id();
        let part_size = self.config.multipart_chunk_size.max(len.div_ceil(MAX_PARTS));
        let parts: Vec<(u16, u64, u64)> = (0..len.div_ceil(part_size).max(1))
            .map(|i| ((i + 1) as u16, i * part_size, part_size.min(len - i * part_size)))
            .collect();
        let uploaded = parallel_map(&parts, 4, |&(number, offset, size)| {
            let resp = self.send(relative, &|| {
                let action = self.bucket.upload_part(creds, &key, number, upload_id);
                let mut f = fs::File::open(file).map_err(|e| CacheError::io(file, e))?;
                f.seek(SeekFrom::Start(offset)).map_err(|e| CacheError::io(file, e))?;
                Ok(self.client.put(action.sign(SIGNATURE_LIFETIME)).body(Body::sized(f.take(size), size)))
            })?;
            if !resp.status().is_success() {
                return Err(self.refusal(relative, resp));
            }
            let etag = resp.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
            etag.ok_or_else(|| CacheError::S3Refused {
                url: self.location(relative),
                status: resp.status().as_u16(),
                code: "MalformedResponse".into(),
                message: format!("part {number} has no ETag"),
            })
        });
        let etags = match uploaded.into_iter().collect::<Result<Vec<String>>>() {
            Ok(etags) => etags,
            Err(e) => {
                self.abort(relative, &key, upload_id);
                return Err(e);
            }
        };
        let resp = self.send(relative, &|| {
            let action = self.bucket.complete_multipart_upload(creds, &key, upload_id, etags.iter().map(String::as_str));
            let url = action.sign(SIGNATURE_LIFETIME);
            Ok(self.client.post(url).body(action.body()))
        });
        match resp {
            Ok(resp) if resp.status().is_success() => {
                // S3 may answer 200 and put the error in the body.
                let text = resp.text().unwrap_or_default();
                if text.contains("<Error>") {
                    self.abort(relative, &key, upload_id);
                    return Err(CacheError::S3Refused {
                        url: self.location(relative),
                        status: 200,
                        code: "CompleteMultipartUpload".into(),
                        message: "the server reported an error completing the upload".into(),
                    });
                }
                Ok(())
            }
            Ok(resp) => {
                let e = self.refusal(relative, resp);
                self.abort(relative, &key, upload_id);
                Err(e)
            }
            Err(e) => {
                self.abort(relative, &key, upload_id);
                Err(e)
            }
        }
    }

    fn abort(&self, relative: &str, key: &str, upload_id: &str) {
        let _ = self.send(relative, &|| {
            let action = self.bucket.abort_multipart_upload(self.credentials.as_ref(), key, upload_id);
            Ok(self.client.delete(action.sign(SIGNATURE_LIFETIME)))
        });
    }
}

/// An object's body that picks up where it broke off: a failed read (a
/// connection reset, a volume server lost mid-stream) asks again for the
/// rest, `Range: bytes=OFFSET-` with `If-Match` of the object's ETag (so
/// an object replaced meanwhile is not spliced), under the cache's retry
/// policy. What it yields is still checked against the narinfo's hashes.
struct ResumingBody {
    body: Response,
    offset: u64,
    etag: Option<String>,
    client: Client,
    bucket: Bucket,
    credentials: Option<Credentials>,
    key: String,
    retry: RetryPolicy,
}

impl ResumingBody {
    /// The rest of the object from `offset`, if the server sends exactly that.
    fn rest(&self) -> Option<Response> {
        let url = self.bucket.get_object(self.credentials.as_ref(), &self.key).sign(SIGNATURE_LIFETIME);
        let mut request = self.client.get(url).header(reqwest::header::RANGE, format!("bytes={}-", self.offset));
        if let Some(etag) = &self.etag {
            request = request.header(reqwest::header::IF_MATCH, etag);
        }
        let resp = request.send().ok()?;
        let range = resp.headers().get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
        let start: u64 = range.strip_prefix("bytes ")?.split('-').next()?.parse().ok()?;
        (resp.status() == StatusCode::PARTIAL_CONTENT && start == self.offset).then_some(resp)
    }
}

impl Read for ResumingBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            match self.body.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if attempt >= self.retry.attempts => return Err(e),
                Err(_) => {
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                    if let Some(rest) = self.rest() {
                        self.body = rest;
                    }
                }
            }
        }
    }
}

impl BinaryCache for S3Cache {
    fn url(&self) -> &str {
        &self.url
    }

    fn document(&self, relative: &str, what: &'static str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some(resp) = self.get(relative)? else { return Ok(None) };
        response_document(resp, self.location(relative), what, limit).map(Some)
    }

    fn open_file(&self, relative: &str) -> Result<Box<dyn Read + Send>> {
        refuse_local_file(relative)?;
        if is_absolute_url(relative) {
            return open_absolute(relative);
        }
        match self.get(relative)? {
            Some(resp) => Ok(Box::new(ResumingBody {
                etag: resp.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned),
                body: resp,
                offset: 0,
                client: self.client.clone(),
                bucket: self.bucket.clone(),
                credentials: self.credentials.clone(),
                key: self.key(relative),
                retry: self.retry,
            })),
            None => Err(CacheError::NotFound { url: self.location(relative) }),
        }
    }

    fn upload(&self, relative: &str, file: &Path, content_type: &str) -> Result<()> {
        let len = fs::metadata(file).map_err(|e| CacheError::io(file, e))?.len();
        if self.config.multipart_upload && len >= self.config.multipart_threshold && len > MIN_PART_SIZE {
            self.put_multipart(relative, file, len, content_type)
        } else {
            self.put_whole(relative, file, len, content_type)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_nix_parameters() {
        let u = S3Url::parse("s3://cache/team/x?endpoint=http://127.0.0.1:8333&region=eu-west-1&addressing-style=virtual&multipart-upload=true&multipart-chunk-size=6291456&multipart-threshold=7000000&storage-class=STANDARD_IA&profile=ci").unwrap();
        assert_eq!(u.bucket, "cache");
        assert_eq!(u.prefix, "team/x/");
        assert_eq!(u.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(u.region, "eu-west-1");
        assert_eq!(u.addressing_style, AddressingStyle::Virtual);
        assert!(u.multipart_upload);
        assert_eq!((u.multipart_chunk_size, u.multipart_threshold), (6291456, 7000000));
        assert_eq!(u.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(u.profile.as_deref(), Some("ci"));
        assert_eq!(u.display(), "s3://cache/team/x");
        let d = S3Url::parse("s3://cache").unwrap();
        assert_eq!((d.prefix.as_str(), d.region.as_str(), d.addressing_style), ("", "us-east-1", AddressingStyle::Auto));
        assert!(!d.multipart_upload);
        assert_eq!(d.display(), "s3://cache");
    }

    #[test]
    fn bad_parameters_are_named() {
        for (url, needle) in [
            ("s3://", "no bucket"),
            ("s3://b?multipart-chunk-size=1024", "smallest part"),
            ("s3://b?multipart-threshold=lots", "not a number"),
            ("s3://b?addressing-style=sideways", "addressing-style"),
            ("s3://b?multipart-upload=maybe", "multipart-upload"),
            ("s3://b?endpiont=http://x", "\"endpiont\""),
        ] {
            let e = S3Url::parse(url).unwrap_err().to_string();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }

    #[test]
    fn auto_addressing_is_path_style_with_an_endpoint() {
        let style = |u: &str| S3Url::parse(u).unwrap().bucket().unwrap().base_url().to_string();
        assert_eq!(style("s3://b?endpoint=http://127.0.0.1:9000"), "http://127.0.0.1:9000/b/");
        assert_eq!(style("s3://b?endpoint=http://localhost:9000&addressing-style=virtual"), "http://b.localhost:9000/");
        assert_eq!(style("s3://b.with.dots?region=eu-west-1"), "https://s3.eu-west-1.amazonaws.com/b.with.dots/");
        assert_eq!(style("s3://b?region=eu-west-1"), "https://b.s3.eu-west-1.amazonaws.com/");
        assert_eq!(style("s3://b?endpoint=minio.internal:9000"), "https://minio.internal:9000/b/");
    }
}

/// Retries against a real HTTP server on loopback that answers as a
/// throttling or failing S3 gateway does.
#[cfg(test)]
mod retry_tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// Answers each request with the next of `replies` (status line and
    /// body), then closes; returns the endpoint.
    fn server(replies: Vec<(&'static str, &'static str)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for (status, body) in replies {
                let Ok((stream, _)) = listener.accept() else { return };
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let mut stream = reader.into_inner();
                let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            }
        });
        endpoint
    }

    fn cache(endpoint: &str, attempts: u32) -> S3Cache {
        signed(endpoint, attempts, Some(Credentials::new("AKIDEXAMPLE", "secret-never-shown")))
    }

    fn signed(endpoint: &str, attempts: u32, credentials: Option<Credentials>) -> S3Cache {
        let config = S3Url::parse(&format!("s3://b/p?endpoint={endpoint}")).unwrap();
        S3Cache::with_credentials(config, credentials)
            .unwrap()
            .with_retry(RetryPolicy { attempts, first_delay: Duration::from_millis(10) })
    }

    fn a_path() -> drv_formats::StorePath {
        drv_formats::StorePath::from_basename("7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-x").unwrap()
    }

    #[test]
    fn a_missing_bucket_is_an_error_not_a_cache_without_paths() {
        let endpoint = server(vec![("404 Not Found", "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>")]);
        let e = cache(&endpoint, 1).narinfo_text(&a_path()).unwrap_err().to_string();
        assert!(e.contains("NoSuchBucket"), "{e}");
    }

    #[test]
    fn without_credentials_a_403_is_a_miss_except_at_the_root() {
        let denied = ("403 Forbidden", "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>");
        let endpoint = server(vec![denied, denied]);
        let anonymous = signed(&endpoint, 1, None);
        assert!(anonymous.narinfo_text(&a_path()).unwrap().is_none());
        let e = anonymous.cache_info().unwrap_err().to_string();
        assert!(e.contains("AccessDenied") && e.contains("no S3 credentials"), "{e}");
    }

    #[test]
    fn a_body_cut_off_mid_stream_resumes_with_a_range_request() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let object: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let served = object.clone();
        let requests = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for round in 0..2 {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    head.push_str(&line);
                    line.clear();
                }
                let mut stream = reader.into_inner();
                if round == 0 {
                    // Promise it all, send 70,000 bytes, hang up.
                    let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"e1\"\r\n\r\n", served.len());
                    let _ = stream.write_all(&served[..70_000]);
                } else {
                    let start: usize = head.split("range: bytes=").nth(1).and_then(|r| r.split('-').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
                    let rest = &served[start..];
                    let _ = write!(
                        stream,
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                        rest.len(),
                        served.len() - 1,
                        served.len()
                    );
                    let _ = stream.write_all(rest);
                }
                seen.push(head.to_ascii_lowercase());
            }
            seen
        });
        let mut body = Vec::new();
        cache(&endpoint, 3).open_file("nar/x.nar").unwrap().read_to_end(&mut body).unwrap();
        assert!(body == object, "{} bytes back", body.len());
        let seen = requests.join().unwrap();
        assert!(seen[1].contains("range: bytes=70000-") && seen[1].contains("if-match: \"e1\""), "{}", seen[1]);
    }

    const SLOW_DOWN: (&str, &str) =
        ("503 Slow Down", "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>");

    #[test]
    fn throttling_and_server_errors_are_retried() {
        let endpoint = server(vec![SLOW_DOWN, ("500 Internal Server Error", ""), ("200 OK", "StoreDir: /store\n")]);
        let info = cache(&endpoint, 3).cache_info().unwrap().unwrap();
        assert_eq!(info.store_dir, "/store");
    }

    #[test]
    fn the_last_refusal_is_reported_with_its_code_and_no_secret() {
        let endpoint = server(vec![SLOW_DOWN, SLOW_DOWN]);
        let e = cache(&endpoint, 2).cache_info().unwrap_err().to_string();
        assert_eq!(e, "s3://b/p/nix-cache-info: HTTP 503 SlowDown: Please reduce your request rate.");
    }

    #[test]
    fn a_missing_object_is_a_miss_and_a_refusal_is_not() {
        let endpoint = server(vec![("404 Not Found", "<Error><Code>NoSuchKey</Code></Error>")]);
        assert!(cache(&endpoint, 1).cache_info().unwrap().is_none());
        let endpoint = server(vec![("403 Forbidden", "<Error><Code>AccessDenied</Code><Message>Access Denied</Message><AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId></Error>")]);
        let e = cache(&endpoint, 1).cache_info().unwrap_err().to_string();
        assert_eq!(e, "s3://b/p/nix-cache-info: HTTP 403 AccessDenied: Access Denied");
    }

    #[test]
    fn a_dead_server_is_a_transport_error_without_the_signed_url() {
        let endpoint = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        // Tried twice, not for the whole policy's time.
        let started = std::time::Instant::now();
        let slow = cache(&endpoint, 6).with_retry(RetryPolicy { attempts: 6, first_delay: Duration::from_millis(200) });
        assert!(slow.cache_info().is_err());
        assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
        let e = cache(&endpoint, 2).cache_info().unwrap_err().to_string();
        assert!(e.starts_with("s3://b/p/nix-cache-info: ") && !e.contains("AKIDEXAMPLE") && !e.contains("X-Amz"), "{e}");
    }
}
