//! What the end-to-end tests share: the fixture images and the checks that they are there, one engine test at a time
//! per test binary, the `docker` CLI and output helpers; and real servers, each removed on drop: a CA made with
//! `openssl`, Debian's `docker-registry` with TLS and htpasswd or token auth (with `token_server.py`, a token
//! service), and a `socat` TLS endpoint in front of the Docker socket.
//!
//! Every server listens on 127.0.0.1 only, on a port the kernel picked. Each test binary uses a part of this module
//! (`mod support;`), hence `dead_code` is allowed.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The fixture builder image from `tests/fixtures/build-images.sh`; `STAVES_TEST_BUILDER` at build time names
/// another (as in pytest).
pub const BUILDER: &str = match option_env!("STAVES_TEST_BUILDER") {
    Some(image) => image,
    None => "staves-test/stage3:latest",
};

/// The fixture Portage snapshot image; `STAVES_TEST_PORTAGE` at build time names another.
pub const PORTAGE: &str = match option_env!("STAVES_TEST_PORTAGE") {
    Some(image) => image,
    None => "staves-test/portage:latest",
};

/// `STAVES_REQUIRE_DOCKER=1` (CI): a missing engine, image or tool fails the tests instead of skipping them.
pub fn required() -> bool {
    std::env::var("STAVES_REQUIRE_DOCKER").as_deref() == Ok("1")
}

/// Whether the engine has every image in `images`. Without them the test is skipped (said on stderr), or fails
/// under [`required`].
pub fn images_present<S: AsRef<str>>(images: &[S]) -> bool {
    let ok = images.iter().all(|image| {
        docker(&["image", "inspect", image.as_ref()])
            .status
            .success()
    });
    assert!(
        ok || !required(),
        "STAVES_REQUIRE_DOCKER=1 but the engine or the fixture images ({}) are missing (run \
         tests/fixtures/build-images.sh)",
        images
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !ok {
        eprintln!("skipping: no engine or fixture images (run tests/fixtures/build-images.sh)");
    }
    ok
}

/// Whether the engine has the fixture images [`BUILDER`] and [`PORTAGE`] (see [`images_present`]).
pub fn engine_ready() -> bool {
    images_present(&[BUILDER, PORTAGE])
}

/// One engine test at a time in the test binary: they are heavy, the machine is shared, and a test may check that
/// it left no container behind, or run `staves prune`, which must not reap another test's build.
pub fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Run the `docker` CLI with `args` (whatever its exit status).
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running the docker CLI")
}

/// `docker build` of `dockerfile` (given on stdin, no context) as `tag`; panics when it fails.
pub fn docker_build(tag: &str, dockerfile: &str) {
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), dockerfile.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker build of {tag}: {}",
        text(&out.stderr)
    );
}

/// Removes an image tag on drop.
pub struct Untag(pub String);

impl Drop for Untag {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}

/// Removes a volume (a build cache) on drop.
pub struct RemoveVolume(pub String);

impl Drop for RemoveVolume {
    fn drop(&mut self) {
        let _ = docker(&["volume", "rm", "-f", &self.0]);
    }
}

/// Bytes a command printed, as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What `out` printed on stdout, as text.
pub fn stdout(out: &Output) -> String {
    text(&out.stdout)
}

/// What `out` printed on stderr, as text.
pub fn stderr(out: &Output) -> String {
    text(&out.stderr)
}

/// Whether every program in `programs` is on PATH. With `STAVES_REQUIRE_DOCKER=1` a missing one fails the test.
pub fn tools_present(programs: &[&str]) -> bool {
    let required = std::env::var("STAVES_REQUIRE_DOCKER").as_deref() == Ok("1");
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| {
            Command::new("sh")
                .args(["-c", &format!("command -v {p}")])
                .stdout(Stdio::null())
                .status()
                .map(|s| !s.success())
                .unwrap_or(true)
        })
        .collect();
    assert!(
        missing.is_empty() || !required,
        "STAVES_REQUIRE_DOCKER=1 but {missing:?} are missing (run tests/install-deps.sh)"
    );
    if !missing.is_empty() {
        eprintln!("skipping: {missing:?} missing (run tests/install-deps.sh)");
    }
    missing.is_empty()
}

/// Run a command and require success.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts connections on 127.0.0.1:`port`, or `child` exits (then panic with its log).
pub fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..300 {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the server exited with {status} before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "nothing listens on 127.0.0.1:{port}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A test CA and certificates it signed, in a temporary directory.
pub struct TestCa {
    pub dir: tempfile::TempDir,
}

impl TestCa {
    /// A new CA (`ca.pem` / `ca.key`).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=Staves test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ])
            .current_dir(dir.path()));
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sign a certificate `NAME.pem` with key `NAME.key`: a server certificate for 127.0.0.1 and localhost, or a
    /// client certificate.
    pub fn issue(&self, name: &str, server: bool) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        run(Command::new("openssl")
            .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj"])
            .arg(format!("/CN={name}"))
            .args([
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ])
            .current_dir(dir));
        let ext = if server {
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        } else {
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n"
        };
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        run(Command::new("openssl")
            .args([
                "x509", "-req", "-days", "2", "-CA", "ca.pem", "-CAkey", "ca.key",
            ])
            .args(["-CAcreateserial", "-in", &format!("{name}.csr")])
            .args([
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ])
            .current_dir(dir));
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }
}

/// A child process killed (and reaped) on drop.
pub struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a test registry authenticates clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryAuth {
    /// htpasswd: HTTP Basic on every request.
    Basic,
    /// Token authentication: a Bearer challenge that sends clients to [`TokenService`] for a JWT.
    Token,
}

/// `tests/support/token_server.py` on 127.0.0.1 with TLS (a certificate of the registry's CA): it checks the
/// registry user's Basic credentials and issues JWTs signed RS256 with a certificate of that CA (sent as `x5c`),
/// granting pull and push on `staves-e2e/*`.
pub struct TokenService {
    pub port: u16,
    pub log: PathBuf,
    _server: Server,
}

impl TokenService {
    pub const SERVICE: &'static str = "staves-test";
    pub const ISSUER: &'static str = "staves-test-issuer";
    pub const SCRIPT: &'static str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/token_server.py");

    fn start(ca: &TestCa, dir: &Path) -> Self {
        let (cert, key) = ca.issue("token-service", true);
        let (sign_cert, sign_key) = ca.issue("token-signer", false);
        let port = free_port();
        let log = dir.join("token-service.log");
        let out = std::fs::File::create(dir.join("token-service.out")).unwrap();
        let mut child = Command::new("python3")
            .arg(Self::SCRIPT)
            .args(["--port", &port.to_string()])
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .arg("--sign-cert")
            .arg(&sign_cert)
            .arg("--sign-key")
            .arg(&sign_key)
            .args(["--issuer", Self::ISSUER, "--service", Self::SERVICE])
            .args(["--user", Registry::USER, "--password", Registry::PASSWORD])
            .args(["--prefix", "staves-e2e/"])
            .arg("--log")
            .arg(&log)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &dir.join("token-service.out"));
        Self {
            port,
            log,
            _server: Server { child },
        }
    }

    /// The realm: `https://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("https://127.0.0.1:{}/token", self.port)
    }
}

/// Debian's `docker-registry` on 127.0.0.1 with TLS (its own CA) and htpasswd auth (`USER`/`PASSWORD`) or token
/// auth (a [`TokenService`] that knows the same user), trusted by the engine through
/// `/etc/docker/certs.d/127.0.0.1:PORT/ca.crt` while it runs.
pub struct Registry {
    // Fields drop in this order: the processes stop before their directories go.
    _server: Server,
    /// Set for [`RegistryAuth::Token`].
    pub token: Option<TokenService>,
    pub ca: TestCa,
    pub port: u16,
    pub dir: tempfile::TempDir,
    certs_d: PathBuf,
}

impl Registry {
    pub const USER: &'static str = "staves";
    pub const PASSWORD: &'static str = "s3cret-pass";

    /// A registry with htpasswd (Basic) auth.
    pub fn start() -> Self {
        Self::start_with(RegistryAuth::Basic)
    }

    pub fn start_with(auth: RegistryAuth) -> Self {
        let ca = TestCa::new();
        let (cert, key) = ca.issue("registry", true);
        let dir = tempfile::tempdir().unwrap();
        let (auth_config, token) = match auth {
            RegistryAuth::Basic => {
                run(Command::new("htpasswd")
                    .args(["-Bbc"])
                    .arg(dir.path().join("htpasswd"))
                    .args([Self::USER, Self::PASSWORD]));
                (
                    format!(
                        "auth:\n  htpasswd:\n    realm: staves-test\n    path: {}\n",
                        dir.path().join("htpasswd").display()
                    ),
                    None,
                )
            }
            RegistryAuth::Token => {
                let token = TokenService::start(&ca, dir.path());
                (
                    format!(
                        "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    \
                         rootcertbundle: {bundle}\n",
                        realm = token.realm(),
                        service = TokenService::SERVICE,
                        issuer = TokenService::ISSUER,
                        bundle = ca.path("ca.pem").display(),
                    ),
                    Some(token),
                )
            }
        };
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: staves-test\n  tls:\n    certificate: {cert}\n    key: {key}\n\
             {auth_config}",
            data = dir.path().join("data").display(),
            cert = cert.display(),
            key = key.display(),
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = dir.path().join("registry.log");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &log);
        let certs_d = PathBuf::from(format!("/etc/docker/certs.d/127.0.0.1:{port}"));
        std::fs::create_dir_all(&certs_d).unwrap();
        std::fs::copy(ca.path("ca.pem"), certs_d.join("ca.crt")).unwrap();
        Self {
            _server: Server { child },
            token,
            ca,
            port,
            dir,
            certs_d,
        }
    }

    /// The registry's log and the token service's, for assertion messages.
    pub fn logs(&self) -> String {
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let mut logs = format!(
            "registry log:\n{}",
            read(self.dir.path().join("registry.log"))
        );
        if let Some(token) = &self.token {
            logs.push_str(&format!(
                "\ntoken service log:\n{}",
                read(token.log.clone())
            ));
        }
        logs
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Docker's certs.d directory for this registry (skopeo's `--cert-dir`).
    pub fn certs_d(&self) -> &Path {
        &self.certs_d
    }

    /// `docker login` into a fresh `DOCKER_CONFIG` directory, returned.
    pub fn login(&self) -> tempfile::TempDir {
        let config = tempfile::tempdir().unwrap();
        let mut login = Command::new("docker");
        login
            .env("DOCKER_CONFIG", config.path())
            .args(["login", "--username", Self::USER, "--password-stdin"])
            .arg(self.address())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = login.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(Self::PASSWORD.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker login failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        config
    }

    /// `skopeo inspect` of `repo:tag` with the credentials in `docker_config`; `None` when it fails.
    pub fn inspect(&self, docker_config: &Path, reference: &str) -> Option<serde_json::Value> {
        let out = Command::new("skopeo")
            .args(["inspect", "--authfile"])
            .arg(docker_config.join("config.json"))
            .arg("--cert-dir")
            .arg(self.certs_d())
            .arg(format!("docker://{}/{reference}", self.address()))
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// The repositories the registry holds (its catalog, read with curl; with token auth, with a token for the
    /// `registry:catalog:*` scope).
    pub fn catalog(&self) -> Vec<String> {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--fail", "--cacert"])
            .arg(self.ca.path("ca.pem"));
        match &self.token {
            None => {
                curl.args(["-u", &format!("{}:{}", Self::USER, Self::PASSWORD)]);
            }
            Some(token) => {
                let out = run(Command::new("curl")
                    .args(["-sS", "--fail", "--cacert"])
                    .arg(self.ca.path("ca.pem"))
                    .args(["-u", &format!("{}:{}", Self::USER, Self::PASSWORD)])
                    .arg(format!(
                        "{}?service={}&scope=registry:catalog:*",
                        token.realm(),
                        TokenService::SERVICE
                    )));
                let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let jwt = answer["token"].as_str().unwrap();
                curl.args(["-H", &format!("Authorization: Bearer {jwt}")]);
            }
        }
        let out = run(curl.arg(format!("https://{}/v2/_catalog", self.address())));
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        body["repositories"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.certs_d);
    }
}

/// `socat` terminating TLS on 127.0.0.1 in front of the local Docker socket, verifying client certificates
/// against the CA: a remote engine as `DOCKER_HOST=tcp://… DOCKER_TLS_VERIFY=1` sees it.
pub struct TlsEngine {
    pub ca: TestCa,
    pub port: u16,
    /// `DOCKER_CERT_PATH`: ca.pem, cert.pem, key.pem of a client the endpoint accepts.
    pub cert_path: PathBuf,
    _server: Server,
}

impl TlsEngine {
    pub fn start() -> Self {
        let ca = TestCa::new();
        let (cert, key) = ca.issue("engine", true);
        let (client_cert, client_key) = ca.issue("client", false);
        let cert_path = ca.path("client-certs");
        std::fs::create_dir_all(&cert_path).unwrap();
        std::fs::copy(ca.path("ca.pem"), cert_path.join("ca.pem")).unwrap();
        std::fs::copy(&client_cert, cert_path.join("cert.pem")).unwrap();
        std::fs::copy(&client_key, cert_path.join("key.pem")).unwrap();
        let port = free_port();
        let log = ca.path("socat.log");
        let mut child = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify=1",
                cert.display(),
                key.display(),
                ca.path("ca.pem").display()
            ))
            .arg("UNIX-CONNECT:/var/run/docker.sock")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &log);
        Self {
            ca,
            port,
            cert_path,
            _server: Server { child },
        }
    }

    /// `tcp://127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}
