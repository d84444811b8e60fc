//! Real Redis servers for tests: one server, a Cluster, a Sentinel group,
//! each on free loopback ports in a directory of its own, killed when
//! dropped. The binaries (`redis-server`, `redis-sentinel`, `redis-cli`)
//! must be on `PATH` (`bash tests/setup.sh` installs them); without them
//! the harness panics, so that a test needing Redis fails instead of
//! passing without having run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer after start.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The path of `binary`, or a panic saying how to install it.
pub fn binary(binary: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(binary))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{binary} is not on PATH: the Redis store tests need a real Redis \
             (run `bash tests/setup.sh`, which installs the Debian packages \
             redis-server, redis-sentinel and redis-tools)"
        )
    })
}

/// A loopback port nothing listens on (free when this returns).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A fresh, empty directory for one server.
fn scratch_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-redis-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the server's directory");
    dir
}

/// One `redis-server` (or `redis-sentinel`) process.
pub struct RedisServer {
    /// Its port (the TLS port for a TLS server).
    pub port: u16,
    /// Its working directory (logs, cluster and sentinel state).
    pub dir: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// Whether a plain-text `PING` shows it is up (not for TLS).
    plain: bool,
}

impl RedisServer {
    /// A standalone server with no persistence on a free port.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// A standalone server with extra `redis-server` arguments (e.g.
    /// `["--requirepass", "pw"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        RedisServer::start_on(free_port(), extra)
    }

    /// A standalone server on `port`.
    pub fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        let program = binary("redis-server");
        let dir = scratch_dir("server");
        let mut args = base_args(port, &dir);
        args.extend(extra.iter().map(|a| a.to_string()));
        RedisServer::launch(program, args, port, dir, true)
    }

    /// A server speaking only TLS on a free port, with `cert`/`key` (PEM)
    /// as its certificate and key. Clients need no certificate.
    pub fn start_tls(cert: &str, key: &str) -> RedisServer {
        let program = binary("redis-server");
        let port = free_port();
        let dir = scratch_dir("tls");
        std::fs::write(dir.join("server.pem"), cert).expect("write certificate");
        std::fs::write(dir.join("server.key"), key).expect("write key");
        let mut args = base_args(0, &dir);
        for (name, value) in [
            ("--tls-port", port.to_string()),
            (
                "--tls-cert-file",
                dir.join("server.pem").display().to_string(),
            ),
            (
                "--tls-key-file",
                dir.join("server.key").display().to_string(),
            ),
            (
                "--tls-ca-cert-file",
                dir.join("server.pem").display().to_string(),
            ),
            ("--tls-auth-clients", "no".into()),
        ] {
            args.push(name.into());
            args.push(value);
        }
        RedisServer::launch(program, args, port, dir, false)
    }

    fn launch(
        program: PathBuf,
        args: Vec<String>,
        port: u16,
        dir: PathBuf,
        plain: bool,
    ) -> RedisServer {
        let mut server = RedisServer {
            port,
            dir,
            program,
            args,
            child: None,
            plain,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stdout.log"))
            .expect("open the server log");
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the server accepts connections (and answers a `PING`
    /// with something, `-NOAUTH` included).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{} exited at start ({status}); its log:\n{}",
                    self.program.display(),
                    self.log()
                );
            }
            if self.answers() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer on port {} within {START_TIMEOUT:?}; its log:\n{}",
                self.program.display(),
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if !self.plain {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 64];
        matches!(stream.read(&mut reply), Ok(n) if n > 0)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, on the same port with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs `redis-cli -p <port> <args>` and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn base_args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "-::1",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs `redis-cli -p <port> <args>`; returns its standard output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(binary("redis-cli"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `done` every 50 ms until it holds or `limit` passes; returns
/// whether it held.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// A Redis Cluster of masters without replicas.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `masters` cluster-enabled servers, joined by `redis-cli --cluster
    /// create` and waited for until every node reports `cluster_state:ok`.
    pub fn start(masters: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = Command::new(binary("redis-cli"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ok = wait_for(START_TIMEOUT, || {
            nodes
                .iter()
                .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
        });
        assert!(ok, "the cluster did not reach cluster_state:ok");
        RedisCluster { nodes }
    }

    /// The nodes' `redis://` URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// A master, one replica and one sentinel watching them as
/// [`RedisSentinel::MASTER_NAME`].
pub struct RedisSentinel {
    /// The servers: the first is the master at start, the second its
    /// replica.
    pub servers: Vec<RedisServer>,
    /// The sentinel.
    pub sentinel: RedisServer,
}

impl RedisSentinel {
    /// The monitored master's name.
    pub const MASTER_NAME: &'static str = "gatehouse-test";

    /// Starts the group and waits until the sentinel knows the replica
    /// (so that a failover has somewhere to go).
    pub fn start() -> RedisSentinel {
        // No 5 s wait before a full sync (the default delay of diskless
        // replication), on both: after a failover the roles swap.
        let fast_sync = ["--repl-diskless-sync-delay", "0"];
        let master = RedisServer::start_with(&fast_sync);
        let master_port = master.port.to_string();
        let mut replica_args = vec!["--replicaof", "127.0.0.1", &master_port];
        replica_args.extend(fast_sync);
        let replica = RedisServer::start_with(&replica_args);
        let program = binary("redis-sentinel");
        let port = free_port();
        let dir = scratch_dir("sentinel");
        let name = Self::MASTER_NAME;
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor {name} 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 3000\n",
            dir.display(),
            master.port
        );
        std::fs::write(dir.join("sentinel.conf"), conf).expect("write sentinel.conf");
        let sentinel = RedisServer::launch(
            program,
            vec![dir.join("sentinel.conf").display().to_string()],
            port,
            dir,
            true,
        );
        let group = RedisSentinel {
            servers: vec![master, replica],
            sentinel,
        };
        let replica_port = group.servers[1].port.to_string();
        let ready = wait_for(START_TIMEOUT, || {
            let replicas = group.sentinel.cli(&["sentinel", "replicas", name]);
            replicas.contains(&replica_port)
                && !replicas.contains("s_down")
                && group.servers[1]
                    .cli(&["info", "replication"])
                    .contains("master_link_status:up")
        });
        assert!(
            ready,
            "the sentinel did not see the replica; its log:\n{}",
            group.sentinel.log()
        );
        group
    }

    /// The sentinel's `redis://` URL.
    pub fn url(&self) -> String {
        self.sentinel.url()
    }

    /// The port of the master the sentinel names now.
    pub fn master_port(&self) -> Option<u16> {
        let out = self
            .sentinel
            .cli(&["sentinel", "get-master-addr-by-name", Self::MASTER_NAME]);
        out.lines().nth(1)?.trim().parse().ok()
    }

    /// Makes the sentinel fail the master over to its replica now.
    pub fn failover(&self) -> String {
        self.sentinel
            .cli(&["sentinel", "failover", Self::MASTER_NAME])
    }
}
