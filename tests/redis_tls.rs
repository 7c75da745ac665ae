//! Redis as production runs it: TLS (`rediss://`, a CA of the test's own,
//! a client certificate the server requires) and an ACL user, against a
//! real `redis-server --tls-port` with certificates made here by `openssl`.
//! A wrong CA and a wrong password stop the start with the key to fix.

mod support;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use support::*;

const USER: &str = "herald";
const PASSWORD: &str = "s3cret-acl-password";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl not found ({e}): these tests make certificates with it; install it with `apt-get install -y openssl`")
        });
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a certificate it signs for `name` (`server` for 127.0.0.1 and
/// localhost, or `client`).
fn ca(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ],
    );
}

fn signed(dir: &Path, ca: &str, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-extfile",
            "san.ext",
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A TLS-only redis-server requiring a client certificate and the ACL
/// user's password (the default user is off).
struct TlsRedis {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TlsRedis {
    fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("herald-tls-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("dir");
        ca(&dir, "ca");
        ca(&dir, "other-ca");
        signed(&dir, "ca", "server");
        signed(&dir, "ca", "client");
        let port = free_port();
        let child = Command::new("redis-server")
            .current_dir(&dir)
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", "server.pem", "--tls-key-file", "server.key"])
            .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "yes"])
            .args(["--user", "default", "off"])
            .args(["--user", USER, "on", &format!(">{PASSWORD}"), "~*", "&*", "+@all"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with `apt-get install -y redis-server`")
            });
        let redis = Self { port, dir, child };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server with TLS did not listen (is this Redis built with TLS? Debian's is)"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        redis
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn url(&self, password: &str) -> String {
        format!("rediss://{USER}:{password}@127.0.0.1:{}", self.port)
    }

    fn config(&self, password: &str, ca: &str) -> herald::config::Config {
        let mut c = config();
        c.redis.url = Some(self.url(password));
        c.redis.tls_ca_file = Some(self.file(ca));
        c.redis.tls_cert_file = Some(self.file("client.pem"));
        c.redis.tls_key_file = Some(self.file("client.key"));
        c
    }
}

/// Starts a node that must refuse to start, and returns its one-line reason.
async fn refused(cfg: herald::config::Config) -> String {
    let listeners = herald::Listeners::bind(&cfg).await.expect("bind");
    let run = herald::run(cfg, listeners, std::future::pending());
    match tokio::time::timeout(std::time::Duration::from_secs(20), run).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(())) => panic!("the node ran and stopped instead of refusing"),
        Err(_) => panic!("the node hangs instead of refusing to start"),
    }
}

#[tokio::test]
async fn nodes_publish_and_receive_over_tls_with_an_acl_user_and_a_client_certificate() {
    let redis = TlsRedis::start();
    let n1 = Herald::start(redis.config(PASSWORD, "ca.pem")).await;
    let n2 = Herald::start(redis.config(PASSWORD, "ca.pem")).await;
    for n in [&n1, &n2] {
        eventually("ready over TLS", || async {
            n.get("/readyz").await.0 == 200
        })
        .await;
    }
    let mut ada = n2.connect("ada").await;
    // Published on n1, through Redis over TLS, to a session on n2.
    let (s, body) = n1
        .post(
            "/v1/messages",
            &json!({"to": "all", "kind": "banner", "title": "over TLS"}).to_string(),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(ada.recv_title().await, "over TLS");
    // The per-user channel and the history too: a resume on n1.
    let (s, body) = n1
        .post(
            "/v1/messages",
            &json!({"to": {"users": ["ada"]}, "kind": "toast", "title": "for ada"}).to_string(),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    let f = ada.recv().await;
    assert_eq!(f["title"], "for ada");
    assert!(f["pos"].as_str().is_some(), "{f}");
    // The CLI, with the same settings from a configuration file.
    let toml = format!(
        "[redis]\nurl = {:?}\ntls_ca_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        redis.url(PASSWORD),
        redis.file("ca.pem"),
        redis.file("client.pem"),
        redis.file("client.key"),
    );
    let file = redis.file("herald.toml");
    std::fs::write(&file, toml).expect("write");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["broadcast", "--title", "from the CLI over TLS", "--config"])
        .arg(&file)
        .args(["--redis", &redis.url(PASSWORD)])
        .output()
        .await
        .expect("herald broadcast");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ada.recv_title().await, "from the CLI over TLS");
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn a_wrong_ca_or_password_stops_the_start_naming_the_key() {
    let redis = TlsRedis::start();
    // The positive control: the right CA and password start.
    let ok = Herald::start(redis.config(PASSWORD, "ca.pem")).await;
    eventually("ready", || async { ok.get("/readyz").await.0 == 200 }).await;
    ok.stop().await;

    let wrong_ca = refused(redis.config(PASSWORD, "other-ca.pem")).await;
    assert!(wrong_ca.starts_with("redis.tls_ca_file:"), "{wrong_ca}");
    assert_eq!(wrong_ca.lines().count(), 1, "{wrong_ca}");

    let wrong_password = refused(redis.config("not-the-password", "ca.pem")).await;
    assert!(
        wrong_password.starts_with("redis.url: Redis refused the login"),
        "{wrong_password}"
    );
    assert!(
        !wrong_password.contains("not-the-password"),
        "the password is not repeated: {wrong_password}"
    );
}

#[test]
fn tls_settings_that_cannot_work_are_refused_by_name() {
    let mut c = config();
    c.redis.url = Some("redis://127.0.0.1:6379".into());
    c.redis.tls_ca_file = Some("/etc/hostname".into());
    let e = c.validate().expect_err("a CA file with a plain URL");
    assert!(e.to_string().contains("redis.tls_ca_file"), "{e}");
    c.redis.url = Some("rediss://127.0.0.1:6379".into());
    assert!(c.validate().is_ok(), "with rediss:// it is fine");
    c.redis.tls_cert_file = Some("/etc/hostname".into());
    let e = c.validate().expect_err("a certificate without its key");
    assert!(e.to_string().contains("redis.tls_key_file"), "{e}");
    c.redis.tls_key_file = Some("/nonexistent/key.pem".into());
    let e = c.validate().expect_err("a missing file");
    assert!(e.to_string().contains("redis.tls_key_file"), "{e}");
}
