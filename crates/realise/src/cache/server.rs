//! `drv cache serve`: a local store served as a binary cache over HTTP
//! (axum on tokio), in the way Harmonia serves Nix's store.
//!
//! - `GET /nix-cache-info`;
//! - `GET /<hashpart>.narinfo`: answered from SQLite, signed on the fly
//!   with the server's key; its `URL` is `nar/<hashpart>-<narhash>.nar.zst`
//!   (or `.nar` with `Compression: none`);
//! - `GET /nar/<hashpart>-<narhash>.nar[.zst]`: the NAR, dumped from the
//!   store and compressed while it streams (never held in memory whole);
//! - with `writable`: `PUT /nar/<name>` keeps an upload aside, and
//!   `PUT /<hashpart>.narinfo` installs the path after its NAR checked out
//!   against the narinfo (hash, size, and a trusted signature when trusted
//!   keys are configured).

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt as _;

use drv_formats::{nar, NarInfo, PublicKey, SecretKey, StoreDir};

use super::{nar_extension, parse_narinfo, restore_verified, CacheError, CacheInfo};
use drv_store::{LocalStore, PathVersion};
use drv_store::PathInfo;

/// zstd level for NARs compressed on the fly: level 1 keeps up with a
/// loopback link on one core; the client's decompression costs the same
/// at any level.
pub const SERVE_ZSTD_LEVEL: i32 = 1;

/// How NARs are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeCompression {
    Zstd,
    None,
}

/// What a server serves and accepts.
#[derive(Clone)]
pub struct ServerOptions {
    /// Physical root and store directory of the local store served.
    pub root: PathBuf,
    pub store_dir: StoreDir,
    /// Narinfos are signed with this key as they are served.
    pub key: Option<SecretKey>,
    /// Accept `PUT` uploads.
    pub writable: bool,
    /// When not empty, an uploaded narinfo needs a signature by one of
    /// these keys.
    pub trusted_keys: Vec<PublicKey>,
    pub compression: ServeCompression,
    /// `Priority` in `nix-cache-info` (lower is preferred by Nix).
    pub priority: u32,
}

struct Shared {
    options: ServerOptions,
    /// Open stores for the blocking handlers (a `LocalStore` is one SQLite
    /// connection, used by one thread at a time): opening one per request
    /// would cost more than the lookup.
    stores: Mutex<Vec<LocalStore>>,
    /// Narinfo texts served, by hash part, with the registration they
    /// were made from: a lookup then costs one indexed read instead of
    /// three plus rendering and signing, and a path registered anew is
    /// never answered from an older registration.
    narinfos: Mutex<HashMap<String, (PathVersion, Arc<str>)>>,
}

/// Bound on the narinfo cache (under 1 KiB an entry).
const NARINFO_CACHE_ENTRIES: usize = 100_000;

type AppState = Arc<Shared>;

/// An HTTP error with a plain-text body saying why.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

impl From<CacheError> for Failure {
    fn from(e: CacheError) -> Self {
        Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl Shared {
    fn with_store<T>(&self, f: impl FnOnce(&mut LocalStore) -> Result<T, Failure>) -> Result<T, Failure> {
        let taken = self.stores.lock().unwrap().pop();
        let mut store = match taken {
            Some(s) => s,
            None => LocalStore::open(&self.options.root, self.options.store_dir.clone())
                .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        };
        let r = f(&mut store);
        self.stores.lock().unwrap().push(store);
        r
    }

    fn narinfo_for(&self, info: &PathInfo) -> NarInfo {
        let o = &self.options;
        let hash = info.path.hash_part();
        let (compression, ext) = match o.compression {
            ServeCompression::Zstd => ("zstd", nar_extension("zstd")),
            ServeCompression::None => ("none", nar_extension("none")),
        };
        let uncompressed = o.compression == ServeCompression::None;
        let mut n = NarInfo {
            store_path: info.path.clone(),
            url: format!("nar/{hash}-{}{ext}", info.nar_hash.to_nix32()),
            compression: compression.into(),
            // Compressed on the fly: the compressed file's hash is not known.
            file_hash: uncompressed.then_some(info.nar_hash),
            file_size: uncompressed.then_some(info.nar_size),
            nar_hash: info.nar_hash,
            nar_size: info.nar_size,
            references: info.references.clone(),
            deriver: info.deriver.clone(),
            signatures: info.signatures.clone(),
            ca: info.ca,
        };
        if let Some(k) = &o.key {
            n.sign(&o.store_dir, k);
        }
        n
    }
}

/// The router of a cache server over the store `options` name.
pub fn router(options: ServerOptions) -> Result<Router, CacheError> {
    // Open once now so a wrong root fails at start, not on the first request.
    let store = LocalStore::open(&options.root, options.store_dir.clone())?;
    let state: AppState = Arc::new(Shared { options, stores: Mutex::new(vec![store]), narinfos: Mutex::new(HashMap::new()) });
    Ok(Router::new()
        .route("/nix-cache-info", get(cache_info))
        .route("/{file}", get(get_narinfo).put(put_narinfo))
        .route("/nar/{file}", get(get_nar).put(put_nar))
        .with_state(state))
}

/// Serve until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: ServerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CacheError> {
    let app = router(options)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| CacheError::io(Path::new("<server>"), e))
}

/// A server on a thread of its own, stopped when dropped: for tests and
/// benchmarks of the library.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// Bind `addr` (port 0: any free port) and serve on a new thread.
    pub fn start(addr: SocketAddr, options: ServerOptions) -> Result<Self, CacheError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| CacheError::io(Path::new("<runtime>"), e))?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| CacheError::io(Path::new(&addr.to_string()), e))?;
        let addr = listener.local_addr().map_err(|e| CacheError::io(Path::new("<listener>"), e))?;
        let app = router(options)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(Self { addr, stop: Some(stop), thread: Some(thread) })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn cache_info(State(state): State<AppState>) -> Response {
    let info = CacheInfo {
        store_dir: state.options.store_dir.as_str().to_owned(),
        want_mass_query: true,
        priority: Some(state.options.priority),
    };
    ([(header::CONTENT_TYPE, "text/x-nix-cache-info")], info.to_text()).into_response()
}

fn not_found() -> Failure {
    Failure(StatusCode::NOT_FOUND, "not found".into())
}

/// The hash part of `<hash>.narinfo`, if `file` is one.
fn narinfo_hash(file: &str) -> Option<&str> {
    let hash = file.strip_suffix(".narinfo")?;
    (hash.len() == 32 && drv_formats::nixbase32::decode(hash).is_ok()).then_some(hash)
}

async fn get_narinfo(State(state): State<AppState>, UrlPath(file): UrlPath<String>) -> Result<Response, Failure> {
    let hash = narinfo_hash(&file).ok_or_else(not_found)?.to_owned();
    // Two indexed SQLite reads take microseconds: on the async worker
    // directly, because handing them to the blocking pool cost more than
    // the reads (and made narinfo lookups 3-4x slower than static files).
    let text = state.with_store(|store| {
        let internal = |e: &dyn std::fmt::Display| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        let found = store.path_version_from_hash_part(&hash).map_err(|e| internal(&e))?;
        let Some((path, version)) = found else { return Err(not_found()) };
        if let Some((v, text)) = state.narinfos.lock().unwrap().get(&hash) {
            if *v == version {
                return Ok(text.clone());
            }
        }
        let info = store.path_info(&path).map_err(|e| internal(&e))?.ok_or_else(not_found)?;
        let text: Arc<str> = state.narinfo_for(&info).to_text(&state.options.store_dir).map_err(|e| internal(&e))?.into();
        let mut cache = state.narinfos.lock().unwrap();
        if cache.len() >= NARINFO_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(hash.clone(), (version, text.clone()));
        Ok(text)
    })?;
    let text = text.to_string();
    Ok(([(header::CONTENT_TYPE, "text/x-nix-narinfo")], text).into_response())
}

/// Sends the NAR to the response body in chunks, from a blocking thread.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1 << 17;

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        // The client went away: stop dumping.
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client disconnected"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

async fn get_nar(State(state): State<AppState>, UrlPath(file): UrlPath<String>) -> Result<Response, Failure> {
    let (stem, compressed) = if let Some(s) = file.strip_suffix(".nar.zst") {
        (s, true)
    } else if let Some(s) = file.strip_suffix(".nar") {
        (s, false)
    } else {
        return Err(not_found());
    };
    let (hash, nar_hash) = stem.split_once('-').ok_or_else(not_found)?;
    let (hash, nar_hash) = (hash.to_owned(), nar_hash.to_owned());
    let st = state.clone();
    let info = tokio::task::spawn_blocking(move || {
        st.with_store(|store| {
            // Collections wait while the path is looked up and dumped (the
            // lock goes with the dump): a path found valid is not deleted
            // under a client mid-transfer. A long-running server cannot
            // hold temporary roots per request instead: they would only go
            // when it exits.
            let hold = store.collection_guard()
                .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            let path = store.path_from_hash_part(&hash).map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            let path = path.ok_or_else(not_found)?;
            let info = store.path_info(&path).map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            let info = info.ok_or_else(not_found)?;
            // The URL names the contents: a path since replaced is gone.
            if info.nar_hash.to_nix32() != nar_hash {
                return Err(not_found());
            }
            Ok((info, store.real_path(&path), hold))
        })
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let (info, real, hold) = info;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(16);
    tokio::task::spawn_blocking(move || {
        let _hold = hold;
        let mut out = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK) };
        let result = (|| -> io::Result<()> {
            if compressed {
                let mut enc = zstd::stream::write::Encoder::new(out, SERVE_ZSTD_LEVEL)?;
                nar::dump_path(&real, &mut enc).map_err(io::Error::other)?;
                enc.finish()?.flush()
            } else {
                nar::dump_path(&real, &mut out).map_err(io::Error::other)?;
                out.flush()
            }
        })();
        if let Err(e) = result {
            // Ends the body with an error, so the client sees a broken
            // transfer rather than a short NAR.
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, "application/x-nix-nar".parse().unwrap());
    if !compressed {
        resp.headers_mut().insert(header::CONTENT_LENGTH, info.nar_size.into());
    }
    Ok(resp)
}

/// Where uploaded NARs wait for their narinfo.
fn upload_dir(store: &LocalStore) -> PathBuf {
    store.layout().cache_uploads_dir()
}

/// An uploaded file's name, if it is a plain one (no way out of the
/// upload folder).
fn upload_name(file: &str) -> Option<&str> {
    let ok = !file.is_empty()
        && !file.starts_with('.')
        && file.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    ok.then_some(file)
}

async fn put_nar(State(state): State<AppState>, UrlPath(file): UrlPath<String>, body: Body) -> Result<Response, Failure> {
    if !state.options.writable {
        return Err(Failure(StatusCode::METHOD_NOT_ALLOWED, "this cache is read-only (start it with --writable)".into()));
    }
    let name = upload_name(&file).ok_or_else(|| Failure(StatusCode::BAD_REQUEST, format!("bad NAR name {file:?}")))?;
    let dir = state.with_store(|s| Ok(upload_dir(s)))?;
    std::fs::create_dir_all(&dir).map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".part-")
        .tempfile_in(&dir)
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_string()))?;
        tmp.write_all(&chunk).map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    tmp.persist(dir.join(name)).map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.error.to_string()))?;
    Ok(StatusCode::OK.into_response())
}

async fn put_narinfo(State(state): State<AppState>, UrlPath(file): UrlPath<String>, body: Bytes) -> Result<Response, Failure> {
    if !state.options.writable {
        return Err(Failure(StatusCode::METHOD_NOT_ALLOWED, "this cache is read-only (start it with --writable)".into()));
    }
    let hash = narinfo_hash(&file).ok_or_else(not_found)?.to_owned();
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.with_store(|store| accept_upload(store, &st.options, &hash, &body)))
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(StatusCode::OK.into_response())
}

/// Install an uploaded path: its narinfo must be well-formed, for this
/// store directory and (with trusted keys) signed; its NAR must have been
/// uploaded and match; its references must be valid here.
fn accept_upload(store: &mut LocalStore, options: &ServerOptions, hash: &str, text: &[u8]) -> Result<(), Failure> {
    let bad = |e: CacheError| Failure(StatusCode::BAD_REQUEST, e.to_string());
    let info = parse_narinfo(&options.store_dir, &format!("{hash}.narinfo"), text).map_err(bad)?;
    if info.store_path.hash_part() != hash {
        return Err(Failure(StatusCode::BAD_REQUEST, format!("{hash}.narinfo describes {}", info.store_path)));
    }
    let display = options.store_dir.display(&info.store_path);
    if !options.trusted_keys.is_empty() && !info.has_valid_signature(&options.store_dir, &options.trusted_keys) {
        return Err(Failure(StatusCode::FORBIDDEN, format!("{display}: no signature by a trusted key")));
    }
    let internal = |e: drv_store::StoreError| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    // Each path is rooted before its validity is read, so a collection
    // cannot take a reference away between this check and the install.
    store.add_temp_root(&info.store_path).map_err(internal)?;
    if store.is_valid(&info.store_path).map_err(internal)? {
        return Ok(());
    }
    for r in &info.references {
        store.add_temp_root(r).map_err(internal)?;
        if r != &info.store_path && !store.is_valid(r).map_err(internal)? {
            return Err(Failure(
                StatusCode::CONFLICT,
                format!("{display}: its reference {} is not in this cache yet (upload references first)", options.store_dir.display(r)),
            ));
        }
    }
    let name = info
        .url
        .strip_prefix("nar/")
        .and_then(upload_name)
        .ok_or_else(|| Failure(StatusCode::BAD_REQUEST, format!("{display}: unexpected NAR URL {:?}", info.url)))?;
    let spooled = upload_dir(store).join(name);
    let file = std::fs::File::open(&spooled)
        .map_err(|_| Failure(StatusCode::BAD_REQUEST, format!("{display}: its NAR {} was not uploaded", info.url)))?;
    let staging = store.staging().map_err(internal)?;
    restore_verified(Box::new(file), &info, &options.store_dir, &staging).map_err(bad)?;
    let _ = std::fs::remove_file(&spooled);
    let locks = store.lock_paths([info.store_path.clone()]).map_err(internal)?;
    store.add_valid(&locks, vec![drv_store::NewPath::from_narinfo(staging, &info)], None).map_err(internal)
}
