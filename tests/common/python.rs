//! Python distributions made by the tests themselves (wheels with their
//! RECORD, sdists with PKG-INFO) and a PEP 503 simple index serving them
//! on 127.0.0.1, for `DRV_MIRROR_PYPI`. The archives are byte-for-byte
//! reproducible (fixed times and modes), so a distribution made twice is
//! the same file with the same hash.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Response, StatusCode, Uri};
use drv_formats::Sha256;

/// A file as an index serves it.
#[derive(Clone)]
pub struct Dist {
    /// The normalized project name (PEP 503).
    pub project: String,
    pub version: String,
    pub filename: String,
    pub bytes: Vec<u8>,
}

impl Dist {
    /// Lower-case hex, as requirements files and index pages write it.
    pub fn sha256(&self) -> String {
        Sha256::digest(&self.bytes).to_hex()
    }
}

/// `name==version --hash=sha256:…` allowing every one of `dists`.
pub fn requirement(dists: &[&Dist]) -> String {
    let first = dists.first().expect("at least one file");
    let hashes: Vec<String> = dists.iter().map(|d| format!("--hash=sha256:{}", d.sha256())).collect();
    format!("{}=={} {}", first.project, first.version, hashes.join(" "))
}

/// PEP 503 normalization: runs of `-`, `_`, `.` become one `-`, lower case.
pub fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// RECORD's hash of `data`: `sha256=` and the urlsafe base64 of the digest
/// without padding (PEP 376, PEP 427).
pub fn record_hash(data: &[u8]) -> String {
    let standard = Sha256::digest(data).to_sri();
    let b64 = standard.strip_prefix("sha256-").expect("an SRI hash");
    let urlsafe = b64.trim_end_matches('=').replace('+', "-").replace('/', "_");
    format!("sha256={urlsafe}")
}

/// A wheel to make: `Wheel::new("alpha", "1.0").file(…).requires(…).build()`.
pub struct Wheel {
    name: String,
    version: String,
    tag: String,
    files: Vec<(String, Vec<u8>)>,
    requires: Vec<String>,
    scripts: Vec<(String, String)>,
}

impl Wheel {
    /// A pure wheel (`py3-none-any`) with no files yet.
    pub fn new(name: &str, version: &str) -> Self {
        Self { name: name.into(), version: version.into(), tag: "py3-none-any".into(), files: vec![], requires: vec![], scripts: vec![] }
    }

    /// The wheel's tag (`cp311-abi3-manylinux_2_17_x86_64`).
    pub fn tag(mut self, tag: &str) -> Self {
        self.tag = tag.into();
        self
    }

    pub fn file(mut self, path: &str, contents: &[u8]) -> Self {
        self.files.push((path.into(), contents.to_vec()));
        self
    }

    /// A `Requires-Dist` line of METADATA.
    pub fn requires(mut self, requirement: &str) -> Self {
        self.requires.push(requirement.into());
        self
    }

    /// A console script (`entry_points.txt`): `name = target`.
    pub fn script(mut self, name: &str, target: &str) -> Self {
        self.scripts.push((name.into(), target.into()));
        self
    }

    pub fn build(self) -> Dist {
        // The distribution name as wheel file names and .dist-info spell it.
        let dist_name = normalize(&self.name).replace('-', "_");
        let info = format!("{dist_name}-{}.dist-info", self.version);
        let mut files = self.files;
        let mut metadata = format!("Metadata-Version: 2.1\nName: {}\nVersion: {}\n", self.name, self.version);
        for r in &self.requires {
            metadata.push_str(&format!("Requires-Dist: {r}\n"));
        }
        files.push((format!("{info}/METADATA"), metadata.into_bytes()));
        let wheel = format!("Wheel-Version: 1.0\nGenerator: drv-tests\nRoot-Is-Purelib: true\nTag: {}\n", self.tag);
        files.push((format!("{info}/WHEEL"), wheel.into_bytes()));
        if !self.scripts.is_empty() {
            let mut entry = String::from("[console_scripts]\n");
            for (name, target) in &self.scripts {
                entry.push_str(&format!("{name} = {target}\n"));
            }
            files.push((format!("{info}/entry_points.txt"), entry.into_bytes()));
        }
        let mut record: String = files.iter().map(|(p, d)| format!("{p},{},{}\n", record_hash(d), d.len())).collect();
        record.push_str(&format!("{info}/RECORD,,\n"));
        files.push((format!("{info}/RECORD"), record.into_bytes()));

        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644);
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (path, data) in &files {
            z.start_file(path.as_str(), options).unwrap();
            z.write_all(data).unwrap();
        }
        let bytes = z.finish().unwrap().into_inner();
        let filename = format!("{dist_name}-{}-{}.whl", self.version, self.tag);
        Dist { project: normalize(&self.name), version: self.version, filename, bytes }
    }
}

/// An sdist (`NAME-VERSION.tar.gz`): `files` (paths relative to the
/// project's directory, `pyproject.toml` among them) and a PKG-INFO.
pub fn sdist(name: &str, version: &str, files: &[(&str, &[u8])]) -> Dist {
    let dist_name = normalize(name).replace('-', "_");
    let top = format!("{dist_name}-{version}");
    let pkg_info = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    let mut all: Vec<(String, Vec<u8>)> = vec![(format!("{top}/PKG-INFO"), pkg_info.into_bytes())];
    all.extend(files.iter().map(|(p, d)| (format!("{top}/{p}"), d.to_vec())));
    let gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, data) in &all {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    Dist { project: normalize(name), version: version.into(), filename: format!("{top}.tar.gz"), bytes }
}

/// One file the index serves, and the sha256 its project page lists
/// (normally the file's own).
struct Served {
    dist: Dist,
    listed: String,
}

/// A PEP 503 simple index on 127.0.0.1: `/simple/PROJECT/` lists the
/// project's files as links with `#sha256=` fragments, `/files/NAME`
/// serves them. Files may be added or swapped while it runs. Stopped when
/// dropped.
pub struct SimpleIndex {
    addr: SocketAddr,
    files: Arc<Mutex<BTreeMap<String, Served>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimpleIndex {
    pub fn start() -> Self {
        let files: Arc<Mutex<BTreeMap<String, Served>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let served = files.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(move |uri: Uri| {
                    let served = served.clone();
                    async move { answer(&served.lock().unwrap(), uri.path()) }
                });
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
        });
        let addr = ready_rx.recv().unwrap();
        Self { addr, files, stop: Some(stop), thread: Some(thread) }
    }

    /// The index's base URL, for `DRV_MIRROR_PYPI`.
    pub fn url(&self) -> String {
        format!("http://{}/simple", self.addr)
    }

    /// Where the index serves `filename`.
    pub fn file_url(&self, filename: &str) -> String {
        format!("http://{}/files/{filename}", self.addr)
    }

    /// Serve `dist` (in place of a file of the same name), listed with its hash.
    pub fn publish(&self, dist: &Dist) {
        let served = Served { dist: dist.clone(), listed: dist.sha256() };
        self.files.lock().unwrap().insert(dist.filename.clone(), served);
    }

    /// Serve `bytes` under `filename` from now on; the project page goes on
    /// listing the old hash unless `relist`.
    pub fn swap_bytes(&self, filename: &str, bytes: &[u8], relist: bool) {
        let mut files = self.files.lock().unwrap();
        let served = files.get_mut(filename).unwrap_or_else(|| panic!("{filename} is not served"));
        served.dist.bytes = bytes.to_vec();
        if relist {
            served.listed = served.dist.sha256();
        }
    }
}

fn answer(files: &BTreeMap<String, Served>, path: &str) -> Response<Body> {
    let not_found = || Response::builder().status(StatusCode::NOT_FOUND).body(Body::empty()).unwrap();
    if let Some(name) = path.strip_prefix("/files/") {
        return match files.get(name) {
            Some(s) => Response::builder().header(header::CONTENT_TYPE, "application/octet-stream").body(Body::from(s.dist.bytes.clone())).unwrap(),
            None => not_found(),
        };
    }
    let Some(project) = path.strip_prefix("/simple/").and_then(|p| p.strip_suffix('/')) else { return not_found() };
    let links: Vec<String> = files
        .values()
        .filter(|s| s.dist.project == project)
        .map(|s| format!("<a href=\"../../files/{0}#sha256={1}\">{0}</a><br/>", s.dist.filename, s.listed))
        .collect();
    if links.is_empty() {
        return not_found();
    }
    let page = format!("<!DOCTYPE html>\n<html><body>\n{}\n</body></html>\n", links.join("\n"));
    Response::builder().header(header::CONTENT_TYPE, "text/html; charset=utf-8").body(Body::from(page)).unwrap()
}

impl Drop for SimpleIndex {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
