//! The fetcher against a real HTTP server on 127.0.0.1 (port 0), stopped by
//! a Drop guard. Offline and fast: retry delays are milliseconds.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, Response};
use drv_formats::Sha256;
use drv_realise::Reporter;
use drv_realise::{FetchError, FetchOptions, FetchSource, Fetcher};
use drv_realise::{Mirrors, SystemSources};

/// What the server saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    range: Option<String>,
    accept: Option<String>,
    /// How many requests for this path came before this one.
    earlier: usize,
}

type Handler = dyn Fn(&Seen) -> Response<Body> + Send + Sync;

/// A real HTTP server on a free loopback port; dropping it stops it.
struct TestServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(handler: impl Fn(&Seen) -> Response<Body> + Send + Sync + 'static) -> Self {
        let handler: Arc<Handler> = Arc::new(handler);
        let log = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let app_log = log.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                    let header_value = |name: header::HeaderName| {
                        req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
                    };
                    let path = req.uri().path().to_owned();
                    let mut log = app_log.lock().unwrap();
                    let seen = Seen {
                        earlier: log.iter().filter(|s| s.path == path).count(),
                        range: header_value(header::RANGE),
                        accept: header_value(header::ACCEPT),
                        path,
                    };
                    log.push(seen.clone());
                    drop(log);
                    let response = handler(&seen);
                    async move { response }
                });
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime here cancels the open connections too.
        });
        let addr = ready_rx.recv().unwrap();
        Self { addr, log, stop: Some(stop), thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn ok(body: &[u8]) -> Response<Body> {
    Response::builder().status(200).body(Body::from(body.to_vec())).unwrap()
}

fn status(code: u16) -> Response<Body> {
    Response::builder().status(code).body(Body::from(format!("status {code}"))).unwrap()
}

/// `body` as a server that honours `Range: bytes=N-` answers.
fn ranged(body: &[u8], range: Option<&str>) -> Response<Body> {
    let start = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    match start {
        Some(n) if n < body.len() => Response::builder()
            .status(206)
            .header(header::CONTENT_RANGE, format!("bytes {n}-{}/{}", body.len() - 1, body.len()))
            .body(Body::from(body[n..].to_vec()))
            .unwrap(),
        _ => ok(body),
    }
}

/// Announce all of `body` but send only its first `sent` bytes, then drop
/// the connection.
fn dropped_after(body: &[u8], sent: usize) -> Response<Body> {
    let first = Bytes::from(body[..sent].to_vec());
    let chunks = futures_util::stream::unfold(0, move |step| {
        let first = first.clone();
        async move {
            match step {
                0 => Some((Ok(first), 1)),
                1 => {
                    // Let the first bytes reach the client before the error.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((Err(std::io::Error::other("connection dropped on purpose")), 2))
                }
                _ => None,
            }
        }
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from_stream(chunks))
        .unwrap()
}

/// Records every event, for checking what a download reported.
#[derive(Default)]
struct RecordingReporter {
    events: Mutex<Vec<String>>,
    bytes: Mutex<u64>,
}

impl Reporter for RecordingReporter {
    fn download_started(&self, what: &str, _url: &str, total: Option<u64>) {
        self.events.lock().unwrap().push(format!("started {what} {total:?}"));
    }
    fn download_progress(&self, _what: &str, bytes: u64) {
        *self.bytes.lock().unwrap() += bytes;
    }
    fn download_finished(&self, what: &str) {
        self.events.lock().unwrap().push(format!("finished {what}"));
    }
    fn message(&self, text: &str) {
        self.events.lock().unwrap().push(format!("message {text}"));
    }
}

fn fast_options() -> FetchOptions {
    FetchOptions {
        attempts: 4,
        first_retry_delay: Duration::from_millis(5),
        connect_timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(10),
    }
}

fn fetcher_with(mirrors: BTreeMap<String, String>) -> (Fetcher, Arc<RecordingReporter>) {
    let reporter = Arc::new(RecordingReporter::default());
    let fetcher = Fetcher::with_mirrors(Mirrors::new(mirrors, SystemSources::none()), reporter.clone(), fast_options()).unwrap();
    (fetcher, reporter)
}

fn fetcher() -> (Fetcher, Arc<RecordingReporter>) {
    fetcher_with(BTreeMap::new())
}

/// Deterministic bytes that are not all alike.
fn payload(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn url(u: String) -> FetchSource {
    FetchSource::Url(u)
}

#[test]
fn fetch_to_writes_the_file_when_the_hash_matches() {
    let body = payload(700_000);
    let served = body.clone();
    let server = TestServer::start(move |_| ok(&served));
    let (f, reporter) = fetcher();
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("file.bin");
    f.fetch_to(&url(server.url("/dir/file.bin")), Sha256::digest(&body), &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), body);
    assert_eq!(entries(t.path()), vec!["file.bin"]);
    assert_eq!(*reporter.bytes.lock().unwrap(), body.len() as u64);
    let events = reporter.events.lock().unwrap().clone();
    assert_eq!(events, vec![format!("started file.bin Some({})", body.len()), "finished file.bin".to_owned()]);
    // an existing destination is refused before anything is fetched
    let err = f.fetch_to(&url(server.url("/dir/file.bin")), Sha256::digest(&body), &dest).unwrap_err();
    assert!(matches!(err, FetchError::DestinationExists { .. }), "{err}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn wrong_hash_is_an_error_with_both_hashes_and_leaves_nothing() {
    let server = TestServer::start(|_| ok(b"actual contents"));
    let (f, _) = fetcher();
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("f");
    let expected = Sha256::digest(b"what the recipe says");
    let got = Sha256::digest(b"actual contents");
    let err = f.fetch_to(&url(server.url("/f")), expected, &dest).unwrap_err();
    match &err {
        FetchError::HashMismatch { url, expected: e, got: g } => {
            assert_eq!(url, &server.url("/f"));
            assert_eq!((*e, *g), (expected, got));
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    for h in [expected, got] {
        assert!(text.contains(&h.to_string()) && text.contains(&h.to_sri()), "{text}");
    }
    assert!(!dest.exists());
    assert!(entries(t.path()).is_empty(), "{:?}", entries(t.path()));
}

#[test]
fn server_errors_are_retried() {
    let server = TestServer::start(|seen| match seen.earlier {
        0 => status(500),
        1 => status(429),
        _ => ok(b"third time lucky"),
    });
    let (f, reporter) = fetcher();
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("f");
    f.fetch_to(&url(server.url("/f")), Sha256::digest(b"third time lucky"), &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"third time lucky");
    assert_eq!(server.requests().len(), 3);
    let retries = reporter.events.lock().unwrap().iter().filter(|e| e.starts_with("message")).count();
    assert_eq!(retries, 2);
}

#[test]
fn persistent_server_errors_give_up_after_the_attempts() {
    let server = TestServer::start(|_| status(503));
    let (f, _) = fetcher();
    let t = tempfile::tempdir().unwrap();
    let err = f.fetch_to(&url(server.url("/f")), Sha256::digest(b""), &t.path().join("f")).unwrap_err();
    assert!(matches!(&err, FetchError::GaveUp { attempts: 4, last, .. } if matches!(**last, FetchError::HttpStatus { status: 503, .. })), "{err}");
    assert_eq!(server.requests().len(), 4);
    assert!(entries(t.path()).is_empty());
}

#[test]
fn not_found_is_not_retried() {
    let server = TestServer::start(|_| status(404));
    let (f, _) = fetcher();
    let t = tempfile::tempdir().unwrap();
    let err = f.fetch_to(&url(server.url("/missing.tar.gz")), Sha256::digest(b""), &t.path().join("f")).unwrap_err();
    assert!(matches!(&err, FetchError::NotFound { status: 404, .. }), "{err}");
    assert!(err.to_string().contains("not found") && err.to_string().contains("/missing.tar.gz"), "{err}");
    assert_eq!(server.requests().len(), 1);
    assert!(entries(t.path()).is_empty());
}

#[test]
fn a_dropped_connection_resumes_with_range() {
    let body = payload(300_000);
    let served = body.clone();
    let server = TestServer::start(move |seen| match seen.earlier {
        0 => dropped_after(&served, 100_000),
        _ => ranged(&served, seen.range.as_deref()),
    });
    let (f, reporter) = fetcher();
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("f");
    f.fetch_to(&url(server.url("/big")), Sha256::digest(&body), &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range, None);
    assert_eq!(requests[1].range.as_deref(), Some("bytes=100000-"));
    assert_eq!(*reporter.bytes.lock().unwrap(), body.len() as u64);
}

#[test]
fn a_server_ignoring_range_restarts_from_zero() {
    let body = payload(200_000);
    let served = body.clone();
    let server = TestServer::start(move |seen| match seen.earlier {
        0 => dropped_after(&served, 50_000),
        _ => ok(&served),
    });
    let (f, _) = fetcher();
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("f");
    f.fetch_to(&url(server.url("/big")), Sha256::digest(&body), &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), body);
    assert_eq!(server.requests()[1].range.as_deref(), Some("bytes=50000-"));
}

#[test]
fn file_urls_are_read_directly() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("source file.txt");
    fs::write(&src, b"local bytes").unwrap();
    let (f, _) = fetcher();
    let source = url(reqwest::Url::from_file_path(&src).unwrap().to_string());
    let dest = t.path().join("out");
    f.fetch_to(&source, Sha256::digest(b"local bytes"), &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"local bytes");
    let prefetched = f.prefetch(&source).unwrap();
    assert_eq!((prefetched.sha256, prefetched.size), (Sha256::digest(b"local bytes"), 11));
    let missing = url(format!("file://{}/nope", t.path().display()));
    assert!(matches!(f.fetch_to(&missing, Sha256::digest(b""), &t.path().join("x")), Err(FetchError::NoSuchFile { .. })));
}

#[test]
fn mirror_urls_resolve_through_the_configuration() {
    let server = TestServer::start(|seen| if seen.path == "/base/pool/x.deb" { ok(b"deb") } else { status(404) });
    let (f, _) = fetcher_with(BTreeMap::from([("test".to_owned(), server.url("/base/"))]));
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("x.deb");
    f.fetch_to(&url("mirror://test/pool/x.deb".to_owned()), Sha256::digest(b"deb"), &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"deb");
    let err = f.fetch_to(&url("mirror://other/x".to_owned()), Sha256::digest(b""), &t.path().join("y")).unwrap_err();
    assert!(err.to_string().contains("DRV_MIRROR_OTHER"), "{err}");
}

#[test]
fn prefetch_hashes_an_unknown_download() {
    let body = payload(12_345);
    let served = body.clone();
    let server = TestServer::start(move |_| ok(&served));
    let (f, _) = fetcher();
    let p = f.prefetch(&url(server.url("/a/b.tar.xz"))).unwrap();
    assert_eq!(p.sha256, Sha256::digest(&body));
    assert_eq!(p.size, body.len() as u64);
    assert_eq!(fs::read(&p.file).unwrap(), body);
    let path = p.file.to_path_buf();
    drop(p);
    assert!(!path.exists(), "the temporary file is removed with the value");
}

/// A simple index at /simple/ with one project whose page is JSON or HTML,
/// and its file under /files/.
fn index_server(json: bool, listed_sha256: String) -> TestServer {
    TestServer::start(move |seen| match seen.path.as_str() {
        "/simple/demo-pkg/" if json => {
            assert!(seen.accept.as_deref().unwrap_or("").contains("application/vnd.pypi.simple.v1+json"));
            let page = serde_json::json!({
                "meta": {"api-version": "1.0"},
                "name": "demo-pkg",
                "files": [
                    {"filename": "demo_pkg-0.9.tar.gz", "url": "../../files/old.tar.gz", "hashes": {}},
                    {"filename": "demo_pkg-1.0.tar.gz", "url": "../../files/demo_pkg-1.0.tar.gz",
                     "hashes": {"sha256": listed_sha256}},
                ]
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "application/vnd.pypi.simple.v1+json")
                .body(Body::from(page.to_string()))
                .unwrap()
        }
        "/simple/demo-pkg/" => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Body::from(format!(
                "<!DOCTYPE html><html><body>\n\
                 <a href=\"../../files/old.tar.gz\">demo_pkg-0.9.tar.gz</a><br/>\n\
                 <a href=\"../../files/demo_pkg-1.0.tar.gz#sha256={listed_sha256}\">demo_pkg-1.0.tar.gz</a><br/>\n\
                 </body></html>"
            )))
            .unwrap(),
        "/files/demo_pkg-1.0.tar.gz" => ok(b"sdist bytes"),
        _ => status(404),
    })
}

#[test]
fn python_index_json_page_locates_the_file() {
    let sha = Sha256::digest(b"sdist bytes");
    let server = index_server(true, sha.to_hex());
    let (f, _) = fetcher_with(BTreeMap::from([("pypi".to_owned(), server.url("/simple"))]));
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("demo.tar.gz");
    let source = FetchSource::PythonIndexFile { project: "Demo_Pkg".into(), filename: "demo_pkg-1.0.tar.gz".into() };
    assert_eq!(f.resolve_url(&source).unwrap(), server.url("/files/demo_pkg-1.0.tar.gz"));
    f.fetch_to(&source, sha, &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"sdist bytes");
    let missing = FetchSource::PythonIndexFile { project: "demo-pkg".into(), filename: "demo_pkg-2.0.tar.gz".into() };
    let err = f.fetch_to(&missing, sha, &t.path().join("x")).unwrap_err();
    assert!(matches!(err, FetchError::NotInIndex { .. }), "{err}");
}

#[test]
fn python_index_html_page_locates_the_file() {
    let sha = Sha256::digest(b"sdist bytes");
    let server = index_server(false, sha.to_hex());
    let (f, _) = fetcher_with(BTreeMap::from([("pypi".to_owned(), server.url("/simple/"))]));
    let source = FetchSource::PythonIndexFile { project: "demo.pkg".into(), filename: "demo_pkg-1.0.tar.gz".into() };
    let p = f.prefetch(&source).unwrap();
    assert_eq!(p.sha256, sha);
    assert_eq!(p.url, server.url("/files/demo_pkg-1.0.tar.gz"));
}

#[test]
fn python_index_listing_another_hash_is_refused_before_downloading() {
    let listed = Sha256::digest(b"what the index says");
    let server = index_server(true, listed.to_hex());
    let (f, _) = fetcher_with(BTreeMap::from([("pypi".to_owned(), server.url("/simple"))]));
    let t = tempfile::tempdir().unwrap();
    let source = FetchSource::PythonIndexFile { project: "demo-pkg".into(), filename: "demo_pkg-1.0.tar.gz".into() };
    let err = f.fetch_to(&source, Sha256::digest(b"sdist bytes"), &t.path().join("x")).unwrap_err();
    assert!(matches!(&err, FetchError::IndexHashMismatch { listed: l, .. } if *l == listed), "{err}");
    assert!(server.requests().iter().all(|s| !s.path.starts_with("/files/")));
    assert!(entries(t.path()).is_empty());
}

/// An index answering with an endless project page: the read stops at
/// the page limit (the fetcher does not hold the whole answer in memory).
#[test]
fn an_endless_index_page_is_refused_at_the_limit() {
    static CHUNK: [u8; 1 << 16] = [b' '; 1 << 16];
    let server = TestServer::start(|seen| match seen.path.as_str() {
        "/simple/demo-pkg/" => Response::builder()
            .header(header::CONTENT_TYPE, "text/html")
            .body(Body::from_stream(futures_util::stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from_static(&CHUNK)))))
            .unwrap(),
        _ => status(404),
    });
    let (f, _) = fetcher_with(BTreeMap::from([("pypi".to_owned(), server.url("/simple"))]));
    let source = FetchSource::PythonIndexFile { project: "demo-pkg".into(), filename: "demo_pkg-1.0.tar.gz".into() };
    let err = f.resolve_url(&source).unwrap_err();
    assert!(
        matches!(&err, FetchError::IndexPage { message, .. } if message.contains("larger than")),
        "{err}"
    );
}
