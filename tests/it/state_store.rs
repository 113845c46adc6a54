//! The checkpoint state store (SPEC §12, issue 8 item 3): one conformance
//! suite run against a directory, Azurite (the Azure Storage emulator, npm
//! `azurite`) and moto in server mode (PyPI `moto[server]`, S3). Each
//! emulator is started by the test as a real process on a free 127.0.0.1
//! port and killed when the test ends. Without the emulator a test prints
//! why and passes, except when `CI` is set, where it fails.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use connector_ga_exporter::checkpoint::store::{self, StateStore, StoreError};
use connector_ga_exporter::config::StateConfig;

use crate::harness::free_port;

// ---------------------------------------------------------------------------
// The suite.

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Runs every check against a store. `open` opens the same place again, as
/// a second member would (a fresh process with nothing but the URL or dir).
fn conformance(open: &dyn Fn() -> Arc<dyn StateStore>) {
    let s = open();
    let what = s.describe();

    // Empty store.
    assert_eq!(s.get("tasks/t/0.ckpt").unwrap(), None, "{what}");
    assert_eq!(s.list("").unwrap(), Vec::<String>::new(), "{what}");

    // Every byte value survives, and an empty object is an object.
    let all_bytes: Bytes = (0..=255u8).cycle().take(3 * 256 + 7).collect();
    s.put("tasks/connector-events/3.ckpt", all_bytes.clone())
        .unwrap();
    s.put("tasks/connector-events/10.ckpt", Bytes::new())
        .unwrap();
    s.put("tasks/other/0.ckpt", b("other")).unwrap();
    s.put("tasks2/x.ckpt", b("x")).unwrap();
    s.put("meta", b("m")).unwrap();
    assert_eq!(
        s.get("tasks/connector-events/3.ckpt").unwrap(),
        Some(all_bytes.clone()),
        "{what}"
    );
    assert_eq!(
        s.get("tasks/connector-events/10.ckpt").unwrap(),
        Some(Bytes::new()),
        "{what}"
    );

    // Sorted (byte order: "10" before "3"), recursive, whole segments.
    assert_eq!(
        s.list("").unwrap(),
        [
            "meta",
            "tasks/connector-events/10.ckpt",
            "tasks/connector-events/3.ckpt",
            "tasks/other/0.ckpt",
            "tasks2/x.ckpt",
        ],
        "{what}"
    );
    let tasks = [
        "tasks/connector-events/10.ckpt",
        "tasks/connector-events/3.ckpt",
        "tasks/other/0.ckpt",
    ];
    assert_eq!(s.list("tasks").unwrap(), tasks, "{what}");
    assert_eq!(s.list("tasks/").unwrap(), tasks, "{what}");
    assert_eq!(
        s.list("tasks/other").unwrap(),
        ["tasks/other/0.ckpt"],
        "{what}"
    );
    assert_eq!(s.list("none").unwrap(), Vec::<String>::new(), "{what}");

    // Overwrite, shorter than before: no tail of the old object remains.
    s.put("tasks/connector-events/3.ckpt", b("v2")).unwrap();
    assert_eq!(
        s.get("tasks/connector-events/3.ckpt").unwrap(),
        Some(b("v2")),
        "{what}"
    );

    // A second member, opened from the configuration alone, sees it all.
    let other = open();
    assert_eq!(other.list("").unwrap().len(), 5, "{what}");
    assert_eq!(
        other.get("tasks/connector-events/3.ckpt").unwrap(),
        Some(b("v2")),
        "{what}"
    );
    drop(other);

    // Delete; absent is not an error.
    s.delete("tasks/connector-events/10.ckpt").unwrap();
    s.delete("tasks/connector-events/10.ckpt").unwrap();
    s.delete("never/written").unwrap();
    assert_eq!(
        s.get("tasks/connector-events/10.ckpt").unwrap(),
        None,
        "{what}"
    );
    assert_eq!(
        s.list("tasks/connector-events").unwrap(),
        ["tasks/connector-events/3.ckpt"],
        "{what}"
    );

    // Keys that could escape the store or collide with temp files are
    // refused before any I/O.
    for k in ["", "/abs", "a//b", "../x", "a/./b", ".tmp", "a b"] {
        match s.put(k, b("x")) {
            Err(StoreError::Key { .. }) => {}
            r => panic!("{what}: put({k:?}) = {r:?}, want a Key error"),
        }
    }

    atomic_overwrite(&s);
    create_only(&s);
    from_a_tokio_runtime(&s, open);

    // Clean up, so the last list is of an empty store again.
    for k in s.list("").unwrap() {
        s.delete(&k).unwrap();
    }
    assert_eq!(s.list("").unwrap(), Vec::<String>::new(), "{what}");
}

/// Readers racing a writer see the whole old object or the whole new one:
/// the two versions differ in length and in every byte, so any mix or
/// truncation is caught.
fn atomic_overwrite(s: &Arc<dyn StateStore>) {
    const KEY: &str = "race/task.ckpt";
    let a = Bytes::from(vec![b'a'; 64 * 1024]);
    let bb = Bytes::from(vec![b'b'; 100 * 1024 + 3]);
    s.put(KEY, a.clone()).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let s = Arc::clone(s);
            let stop = Arc::clone(&stop);
            let (a, bb) = (a.clone(), bb.clone());
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                    let got = s.get(KEY).unwrap().expect("the key always exists");
                    assert!(
                        got == a || got == bb,
                        "{}: read {} bytes, first {:?}: neither whole version",
                        s.describe(),
                        got.len(),
                        got.first()
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 0..30 {
        s.put(KEY, if i % 2 == 0 { bb.clone() } else { a.clone() })
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    // 30 puts, the last (i = 29, odd) wrote `a`.
    assert_eq!(s.get(KEY).unwrap(), Some(a));
    s.delete(KEY).unwrap();
}

/// `put_new` writes only where nothing is: of writers racing on one key,
/// exactly one succeeds, and the store keeps that one's bytes.
fn create_only(s: &Arc<dyn StateStore>) {
    const KEY: &str = "rekey/g-by-connector.partitions";
    let what = s.describe();
    assert!(s.put_new(KEY, b("6\n")).unwrap(), "{what}");
    assert!(!s.put_new(KEY, b("9\n")).unwrap(), "{what}");
    assert_eq!(s.get(KEY).unwrap(), Some(b("6\n")), "{what}");
    s.delete(KEY).unwrap();

    let won: Vec<_> = (0..4)
        .map(|i| {
            let s = Arc::clone(s);
            std::thread::spawn(move || (i, s.put_new(KEY, b(&format!("{i}\n"))).unwrap()))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|&(_, created)| created)
        .collect();
    assert_eq!(won.len(), 1, "{what}: {won:?} all created the key");
    let want = format!("{}\n", won[0].0);
    assert_eq!(s.get(KEY).unwrap(), Some(b(&want)), "{what}");
    assert_eq!(s.list("rekey").unwrap(), [KEY], "{what}: no temp file left");
    s.delete(KEY).unwrap();
}

/// The API is synchronous; the daemon also calls it from tokio's blocking
/// threads, and may drop the last handle inside an async task.
fn from_a_tokio_runtime(s: &Arc<dyn StateStore>, open: &dyn Fn() -> Arc<dyn StateStore>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s2 = Arc::clone(s);
    let in_blocking = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            s2.put("rt/blocking", b("from spawn_blocking")).unwrap();
            s2.get("rt/blocking").unwrap()
        })
        .await
        .unwrap()
    });
    assert_eq!(in_blocking, Some(b("from spawn_blocking")));
    // Opened and dropped on a worker thread, used in between (blocking
    // that worker: allowed, if unwise).
    let fresh = open();
    let in_async = rt.block_on(async move {
        let got = fresh.get("rt/blocking").unwrap();
        drop(fresh);
        got
    });
    assert_eq!(in_async, Some(b("from spawn_blocking")));
    s.delete("rt/blocking").unwrap();
}

fn state_config(dir: &Path, url: Option<String>) -> StateConfig {
    StateConfig {
        dir: dir.to_path_buf(),
        url,
        ..StateConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Emulators as child processes.

/// Returns false (test passes, with a message) when `what` is missing
/// outside CI; panics when CI is set.
fn require(present: bool, what: &str, install: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is not installed and CI is set: {install}");
    }
    eprintln!("SKIP: {what} is not installed ({install}); set CI to make this a failure");
    false
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// A process started by a test, killed (and reaped) when the test ends,
/// passed or not. Its output goes to files in `dir`, shown on failure.
struct Service {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    name: &'static str,
}

impl Service {
    fn start(name: &'static str, cmd: &mut Command, port: u16, dir: tempfile::TempDir) -> Service {
        let out = std::fs::File::create(dir.path().join("out.log")).unwrap();
        let err = std::fs::File::create(dir.path().join("err.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut s = Service {
            child,
            port,
            dir,
            name,
        };
        s.wait_listening();
        s
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{}", read("out.log"), read("err.log"))
    }

    /// Waits until the port accepts connections (an upper bound, not a
    /// timing assertion: slow machines start python slowly).
    fn wait_listening(&mut self) {
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited with {st} before listening:\n{}",
                    self.name,
                    self.logs()
                );
            }
            if start.elapsed() > Duration::from_secs(90) {
                panic!(
                    "{} not listening on {} after 90 s:\n{}",
                    self.name,
                    self.port,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Azurite.

const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key (public, in Azurite's README).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn start_azurite() -> Option<Service> {
    if !require(
        on_path("azurite-blob"),
        "azurite-blob",
        "npm install -g azurite",
    ) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new("azurite-blob");
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort"])
        .arg(port.to_string())
        .arg("--location")
        .arg(dir.path().join("data"))
        // object_store may speak a newer API version than this Azurite.
        .args(["--skipApiVersionCheck", "--loose", "--disableTelemetry"]);
    Some(Service::start("azurite-blob", &mut cmd, port, dir))
}

/// Creates a container with a Shared Key signed request (object_store has
/// no call for it). The string to sign is Azure's "Shared Key" format for
/// the Blob service: the verb, eleven standard headers (all empty here), the
/// x-ms- headers, then the resource: `/account` + the URL path (which in
/// Azurite's path-style URLs starts with the account again), then each query
/// parameter as `\nname:value`.
fn azurite_create_container(azurite: &Service, container: &str) -> reqwest::blocking::Response {
    use base64::Engine as _;
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    let path = format!("/{AZURITE_ACCOUNT}/{container}");
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let sig = base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
    reqwest::blocking::Client::new()
        .put(format!("{}{path}?restype=container", azurite.base()))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header("Content-Length", "0")
        .header(
            "Authorization",
            format!("SharedKey {AZURITE_ACCOUNT}:{sig}"),
        )
        .send()
        .unwrap()
}

/// The environment a member would have: account, key and the emulator's
/// endpoint, as object_store's `from_env` reads them.
fn azurite_env(azurite: &Service, key: &str) -> Vec<(String, String)> {
    [
        ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT.to_string()),
        ("AZURE_STORAGE_ACCOUNT_KEY", key.to_string()),
        (
            "AZURE_STORAGE_ENDPOINT",
            format!("{}/{AZURITE_ACCOUNT}", azurite.base()),
        ),
        ("AZURE_ALLOW_HTTP", "true".to_string()),
        // Not an object_store key: must be ignored, not refused.
        ("AZURE_SOMETHING_ELSE", "x".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn azurite_conformance() {
    let Some(azurite) = start_azurite() else {
        return;
    };
    let r = azurite_create_container(&azurite, "checkpoints");
    assert_eq!(r.status().as_u16(), 201, "create container: {:?}", r.text());
    let env = azurite_env(&azurite, AZURITE_KEY);
    let local = tempfile::tempdir().unwrap();
    let cfg = state_config(
        &local.path().join("unused"),
        Some("az://checkpoints/group-a".into()),
    );
    conformance(&|| store::open_with_env(&cfg, env.clone()).unwrap());
    // An object store leaves the local state dir alone.
    assert!(!local.path().join("unused").exists());

    // The prefix isolates: another prefix in the same container is empty.
    let s = store::open_with_env(&cfg, env.clone()).unwrap();
    s.put("tasks/t/0.ckpt", b("a")).unwrap();
    let cfg_b = state_config(local.path(), Some("az://checkpoints/group-b".into()));
    let sb = store::open_with_env(&cfg_b, env.clone()).unwrap();
    assert_eq!(sb.list("").unwrap(), Vec::<String>::new());
    assert_eq!(sb.get("tasks/t/0.ckpt").unwrap(), None);
    assert_eq!(sb.describe(), "az://checkpoints/group-b");

    // A container that does not exist, and a wrong key: errors that name
    // `state.url` and the URL.
    let missing = state_config(local.path(), Some("az://nosuchcontainer/p".into()));
    let e = store::open_with_env(&missing, env.clone())
        .unwrap()
        .put("k", b("x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`state.url`: az://nosuchcontainer/p"), "{e}");
    // Said as such, on one line (was "Object ... not found" and an XML body).
    assert!(e.contains("does not exist") && !e.contains('\n'), "{e}");
    let wrong_key = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgd3Jvbmcga2V5IHdyb25nIGtleQ==";
    let e = store::open_with_env(&cfg, azurite_env(&azurite, wrong_key))
        .unwrap()
        .get("tasks/t/0.ckpt")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`state.url` az://checkpoints/group-a"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

// ---------------------------------------------------------------------------
// moto (S3).

fn moto_present() -> bool {
    Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start_moto() -> Option<Service> {
    if !require(
        moto_present(),
        "moto (python3 -m moto.server)",
        "pip install 'moto[server]'",
    ) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
        .arg(port.to_string());
    Some(Service::start("moto", &mut cmd, port, dir))
}

fn moto_env(moto: &Service) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT", moto.base()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn moto_s3_conformance() {
    let Some(moto) = start_moto() else {
        return;
    };
    // moto creates a bucket on a plain, unsigned S3 PUT.
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/checkpoints", moto.base()))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "create bucket: {:?}", r.text());
    let env = moto_env(&moto);
    let local = tempfile::tempdir().unwrap();
    let cfg = state_config(local.path(), Some("s3://checkpoints/group-a".into()));
    conformance(&|| store::open_with_env(&cfg, env.clone()).unwrap());
    // s3a:// is the same store.
    let s = store::open_with_env(&cfg, env.clone()).unwrap();
    s.put("tasks/t/1.ckpt", b("one")).unwrap();
    let cfg_a = state_config(local.path(), Some("s3a://checkpoints/group-a".into()));
    let sa = store::open_with_env(&cfg_a, env.clone()).unwrap();
    assert_eq!(sa.get("tasks/t/1.ckpt").unwrap(), Some(b("one")));
    assert_eq!(sa.list("").unwrap(), ["tasks/t/1.ckpt"]);

    let missing = state_config(local.path(), Some("s3://nosuchbucket/p".into()));
    let e = store::open_with_env(&missing, env.clone())
        .unwrap()
        .put("k", b("x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`state.url`: s3://nosuchbucket/p"), "{e}");
    assert!(e.contains("does not exist") && !e.contains('\n'), "{e}");
}

/// A store nobody listens on fails, after bounded retries, with an error
/// naming the key (no wait on a real server).
#[test]
fn unreachable_object_store_is_an_error_not_a_hang() {
    let port = free_port(); // bound and released: nothing listens there
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), "x".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "x".to_string()),
        ("AWS_REGION".to_string(), "us-east-1".to_string()),
        (
            "AWS_ENDPOINT".to_string(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
    ];
    let d = tempfile::tempdir().unwrap();
    let cfg = state_config(d.path(), Some("s3://b/p".into()));
    let s = store::open_with_env(&cfg, env).unwrap();
    let e = s.put("k", b("x")).unwrap_err().to_string();
    assert!(e.contains("`state.url` s3://b/p"), "{e}");
}

// ---------------------------------------------------------------------------
// Directory.

#[test]
fn dir_conformance() {
    let d = tempfile::tempdir().unwrap();
    let cfg = state_config(&d.path().join("state"), None);
    conformance(&|| store::open_with_env(&cfg, Vec::new()).unwrap());
}

#[test]
fn file_url_is_a_directory() {
    let d = tempfile::tempdir().unwrap();
    let dir: PathBuf = d.path().join("shared volume");
    let url = url::Url::from_file_path(&dir).unwrap().to_string();
    let cfg = state_config(&d.path().join("unused"), Some(url));
    conformance(&|| store::open_with_env(&cfg, Vec::new()).unwrap());
    let s = store::open_with_env(&cfg, Vec::new()).unwrap();
    assert_eq!(s.describe(), format!("dir {}", dir.display()));
    s.put("tasks/t/0.ckpt", b("x")).unwrap();
    assert!(dir.join("tasks/t/0.ckpt").is_file());
    assert!(!d.path().join("unused").exists());
}

#[test]
fn open_names_the_key_of_a_bad_setting() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("a file");
    std::fs::write(&file, b"x").unwrap();
    let e = store::open(&state_config(&file, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`state.dir`"), "{e}");
    for (url, want) in [
        ("http://h/p", "az://, azure://"),
        ("s3:///p", "names no bucket"),
        ("file:///", "file:///absolute/path"),
        // A prefix with a space: not a key path this store writes.
        ("s3://b/a%20b", "bad prefix"),
    ] {
        let e = store::open(&state_config(d.path(), Some(url.into())))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`state.url`") && e.contains(want), "{url}: {e}");
    }
}

/// SPEC §12: a member with no local disk restores everything it is
/// assigned from the object store alone. Member A consumes 30 events
/// (27 × 200, 3 × 500 without `fault`: connector failures by default) and
/// drains on SIGTERM, writing its task checkpoints to moto (S3); its
/// working directory is then deleted. Member B starts in a new empty
/// directory with the same `state.url` and group: it must show the 30
/// events at once (restored, not re-read: the group's committed offsets
/// are past them), then count 5 more exactly once.
#[test]
fn member_without_local_disk_restores_from_s3() {
    use crate::harness::{iso, produce, producer, write_config, DaemonCmd};
    let Some(moto) = start_moto() else {
        return;
    };
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/ckpt", moto.base()))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "create bucket: {:?}", r.text());
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("ev", 2, 1).unwrap();
    crate::harness::rekeyed_topic(&mock, "g-s3", 2);
    let brokers = mock.bootstrap_servers();
    let ev = |i: usize, status: u16| {
        format!(
            r#"{{"ts":"{}","connector":"it_s3","status":{status},"user":"u{i}"}}"#,
            iso(10 + i as i64)
        )
    };
    let first: Vec<String> = (0..30)
        .map(|i| ev(i, if i % 10 == 0 { 500 } else { 200 }))
        .collect();
    let p = producer(&brokers);
    produce(&p, "ev", &first);

    let mut env: Vec<(String, String)> = moto_env(&moto);
    env.push((
        "CONNECTOR_GA__STATE__URL".into(),
        "s3://ckpt/members".into(),
    ));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let member = |dir: &Path| {
        let cfg = write_config(dir, "\n[state]\ncheckpoint_interval_seconds = 1\n");
        DaemonCmd::new(&brokers)
            .topic("ev")
            .group("g-s3")
            .config(&cfg)
            .state_dir(&dir.join("unused-state"))
            .cwd(dir)
            .envs(&env_refs)
            .start()
    };
    let requests =
        |d: &crate::harness::Daemon, class: &str| d.requests("it_s3", class).unwrap_or(0.0);

    let disk_a = tempfile::tempdir().unwrap();
    let a = member(disk_a.path());
    a.wait_for(|d| d.events_total("ev") == 30.0, "member A reads 30 events");
    assert!(a.terminate().success(), "member A drains and exits 0");
    assert!(
        !disk_a.path().join("unused-state").join("tasks").exists(),
        "checkpoints went to the object store, not to the disk"
    );
    drop(disk_a);

    let disk_b = tempfile::tempdir().unwrap();
    let b = member(disk_b.path());
    b.wait_for(
        |d| d.events_total("ev") == 30.0,
        "member B restores 30 events",
    );
    assert_eq!(requests(&b, "2xx"), 27.0);
    assert_eq!(requests(&b, "5xx"), 3.0);
    let more: Vec<String> = (30..35).map(|i| ev(i, 200)).collect();
    produce(&p, "ev", &more);
    b.wait_for(|d| d.events_total("ev") == 35.0, "member B counts 5 more");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(b.events_total("ev"), 35.0);
    assert_eq!(requests(&b, "2xx"), 32.0);
}
