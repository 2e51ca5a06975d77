//! A private PostgreSQL cluster for fault tests: tests that stop, crash or restart a server
//! must never do it to the shared one, so each gets a cluster of its own, in a fresh
//! directory, on a free port, removed when it is dropped.
//!
//! Included by the tests and the soak example that need it
//! (`#[path = "common/cluster.rs"] mod cluster;`), not by every test binary.
//!
//! The PostgreSQL server binaries (`initdb`, `pg_ctl`) are found through `PG_BINDIR`, then
//! `pg_config --bindir`, then `PATH`. Without them this panics with what to install: a fault
//! test that skipped itself would prove nothing.

#![allow(dead_code, reason = "each user takes a different part")]
#![allow(
    clippy::expect_used,
    reason = "test support: a failed setup step is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::Connection as _;

/// How long starting or stopping may take before the test fails: a test must never hang.
const DEADLINE: Duration = Duration::from_secs(60);

/// How often [`Cluster::start`] tries to connect while the server comes up.
const POLL: Duration = Duration::from_millis(10);

/// How the server is stopped (`pg_ctl stop -m ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopMode {
    /// Sessions are terminated (57P01 to their clients), then a clean shutdown checkpoint.
    Fast,
    /// Every process quits at once, as in a crash: the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL cluster of this process's own, running (or stopped) in a temporary
/// directory; dropping it stops the server at once and removes the directory.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// Holds `data/` (the cluster), the server's socket and `server.log`.
    base: PathBuf,
    bindir: PathBuf,
    port: u16,
    /// Root may not run the server: initdb and pg_ctl then run as the `postgres` OS user.
    as_postgres: bool,
    running: bool,
}

impl Cluster {
    /// Creates a cluster (trust authentication, small settings, fsync off) and starts it,
    /// returning once it accepts connections.
    pub(crate) async fn start_new() -> Self {
        let bindir = bindir();
        let as_postgres = is_root();
        remove_orphans(&bindir, as_postgres);
        let base = std::env::temp_dir().join(format!(
            "es-pg-cluster-{}-{}-{}",
            std::process::id(),
            unix_time(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&base).expect("create the cluster directory");
        if as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(&base));
        }
        let mut cluster = Self {
            base,
            bindir,
            port: free_port(),
            as_postgres,
            running: false,
        };
        let data = cluster.data();
        let mut initdb = cluster.command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C", "--no-instructions"]);
        run(&mut initdb);
        // Appended by root to a file the postgres user owns: ownership stays as it is.
        let settings = format!(
            "\n# es-postgres fault tests\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket}'\n\
             shared_buffers = 16MB\n\
             max_connections = 60\n\
             fsync = off\n\
             full_page_writes = off\n\
             log_min_messages = warning\n\
             log_min_error_statement = panic\n",
            port = cluster.port,
            socket = cluster.base.display(),
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&settings);
        std::fs::write(&conf, text).expect("write postgresql.conf");
        cluster.start().await;
        cluster
    }

    /// The URL of its `postgres` database, as role `postgres`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its TCP port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server with `mode`, waiting until it is down.
    pub(crate) async fn stop(&mut self, mode: StopMode) {
        self.pg_ctl_stop(mode).await;
    }

    /// Starts the server and returns the instant it first accepted a connection, found by
    /// trying a plain connection every 10 ms (`pg_ctl -w` looks only every 100 ms, too
    /// coarse for recovery times). Fails the test after a minute, with the server log.
    pub(crate) async fn start(&mut self) -> Instant {
        assert!(!self.running, "the cluster is already running");
        let mut start = self.command("pg_ctl");
        start
            .arg("start")
            .arg("-W")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log());
        run_async(start).await;
        self.running = true;
        let url = self.url();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let attempt =
                tokio::time::timeout(Duration::from_secs(2), sqlx::PgConnection::connect(&url))
                    .await;
            if let Ok(Ok(connection)) = attempt {
                let accepted = Instant::now();
                let _ = connection.close().await;
                return accepted;
            }
            assert!(
                Instant::now() < deadline,
                "the private cluster did not accept connections within {DEADLINE:?}; its log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the server with `mode` and starts it again; returns the instant it first
    /// accepted a connection (see [`Cluster::start`]).
    pub(crate) async fn restart(&mut self, mode: StopMode) -> Instant {
        self.stop(mode).await;
        self.start().await
    }

    /// The last lines of the server log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn data(&self) -> PathBuf {
        self.base.join("data")
    }

    fn log(&self) -> PathBuf {
        self.base.join("server.log")
    }

    async fn pg_ctl_stop(&mut self, mode: StopMode) {
        if !self.running {
            return;
        }
        run_async(self.stop_command(mode)).await;
        self.running = false;
    }

    fn stop_command(&self, mode: StopMode) -> Command {
        let mut stop = self.command("pg_ctl");
        stop.arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", mode.as_arg(), "-w", "-t", "60"]);
        stop
    }

    /// `program` from the server binaries, as the `postgres` user when this runs as root.
    fn command(&self, program: &str) -> Command {
        command_as(&self.bindir, self.as_postgres, program)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            // Immediate: nothing here needs a clean shutdown, and a test that failed
            // should not wait for one.
            let _ = self.stop_command(StopMode::Immediate).output();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn command_as(bindir: &Path, as_postgres: bool, program: &str) -> Command {
    let path = bindir.join(program);
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

/// Where `initdb` and `pg_ctl` are, or a panic saying what to install.
fn bindir() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        candidates.push(PathBuf::from(dir));
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        candidates.push(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim(),
        ));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .unwrap_or_else(|| {
            panic!(
                "\n\nThis fault test needs a private PostgreSQL cluster, but `initdb` and \
                 `pg_ctl` were not found (looked in $PG_BINDIR, `pg_config --bindir`, $PATH).\n\
                 Install the PostgreSQL server binaries, e.g. `apt-get install postgresql-15` \
                 (Debian/Ubuntu: they land in /usr/lib/postgresql/15/bin), or set PG_BINDIR \
                 to the directory holding them.\n"
            )
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// A TCP port nobody listens on now (the kernel's pick). Another process could take it
/// before the server binds it; the server would then fail to start, with that in its log.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
        .port()
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Stops and removes clusters left by test processes that no longer exist (killed before
/// their `Drop` ran), so that a shared machine does not fill up with stray servers.
fn remove_orphans(bindir: &Path, as_postgres: bool) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("es-pg-cluster-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let data = entry.path().join("data");
        if data.join("postmaster.pid").exists() {
            let _ = command_as(bindir, as_postgres, "pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "-t", "30"])
                .output();
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `command` off the async workers (pg_ctl can take a second), bounded by the deadline.
async fn run_async(mut command: Command) -> Output {
    let task = tokio::task::spawn_blocking(move || run(&mut command));
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("pg_ctl finishes within the deadline")
        .expect("pg_ctl task")
}
