//! A real PostgreSQL for every test: each call to [`fresh_database`] creates a
//! new, migrated database on a server found once per test process, in this order:
//!
//! 1. `INVARIO_TEST_DATABASE_URL` (any database on the server; the harness
//!    creates its own next to it, so the role must be allowed to `CREATE DATABASE`);
//! 2. a throwaway cluster started from local PostgreSQL server binaries
//!    (`initdb`, `pg_ctl`) on a free port in a temporary folder, run as the
//!    `postgres` user when the process is root, removed when the process exits;
//! 3. testcontainers' Postgres module, when a Docker engine is reachable.
//!
//! If none works the harness panics with a message naming all three. It never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use invario_postgres::PgPool;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The migrations of `migrator` older than `version`: a schema as an earlier
/// release left it, to test the migration that follows on rows it wrote.
pub fn migrations_before(migrator: &sqlx::migrate::Migrator, version: i64) -> sqlx::migrate::Migrator {
    sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            migrator.iter().filter(|migration| migration.version < version).cloned().collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    }
}

/// The environment variable naming a server for tests.
pub const TEST_DATABASE_URL_VAR: &str = "INVARIO_TEST_DATABASE_URL";

/// A database of its own for one test, dropped (with its connections) when this is.
#[derive(Debug)]
pub struct TestDatabase {
    pool: PgPool,
    url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// A pool on the database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Its URL, for connecting other processes (e.g. the `invario` binary).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, so the cleanup gets a thread and runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    // On Citus the workers' copies go too (ignored elsewhere: the setting is unknown).
                    let _ = sqlx::query("SET citus.enable_create_database_propagation = on")
                        .execute(&mut admin)
                        .await;
                    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A new, migrated database on the test server (see the module docs for how it is found).
pub async fn fresh_database() -> TestDatabase {
    let database = fresh_empty_database().await;
    invario_postgres::migrate(&database.pool)
        .await
        .unwrap_or_else(|error| panic!("migrations failed: {error}"));
    database
}

/// A new database with no schema at all (for testing migrations).
pub async fn fresh_empty_database() -> TestDatabase {
    let admin_url = server_url();
    let name = format!("invario_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to the test server {admin_url}: {error}"));
    let workers = citus_workers(&mut admin).await;
    if !workers.is_empty() {
        sqlx::query("SET citus.enable_create_database_propagation = on")
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| {
                panic!("cannot create a database on the Citus cluster {admin_url}: {error}")
            });
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("cannot create a test database on {admin_url}: {error}"));
    let _ = admin.close().await;
    let url = with_database(&admin_url, &name);
    if !workers.is_empty() {
        join_citus_cluster(&url, &workers).await;
    }
    let pool = invario_postgres::connect_with(&url, 40)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to the test database {url}: {error}"));
    TestDatabase { pool, url, name, admin_url }
}

/// The workers (host, port) of the Citus cluster whose coordinator `admin` is
/// connected to; empty on plain PostgreSQL.
async fn citus_workers(admin: &mut PgConnection) -> Vec<(String, i32)> {
    let has_citus: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
            .fetch_one(&mut *admin)
            .await
            .unwrap_or_else(|error| panic!("cannot read the test server's extensions: {error}"));
    if !has_citus {
        return Vec::new();
    }
    sqlx::query_as("SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' ORDER BY nodeport")
        .fetch_all(&mut *admin)
        .await
        .unwrap_or_else(|error| panic!("cannot list the Citus workers: {error}"))
}

/// How often a test database asks the coordinator to add a worker before giving up.
const CITUS_ADD_NODE_ATTEMPTS: usize = 5;

/// Makes the new database `url` (already created on every node) a Citus
/// database: the extension on each worker and on the coordinator, the
/// coordinator and `workers` registered, as `../shared/citus/cluster.sh` does
/// for the cluster's first database.
async fn join_citus_cluster(url: &str, workers: &[(String, i32)]) {
    use sqlx::postgres::PgConnectOptions;
    use std::str::FromStr;
    let options =
        PgConnectOptions::from_str(url).unwrap_or_else(|error| panic!("test database URL {url}: {error}"));
    for (host, port) in workers {
        let port = u16::try_from(*port).unwrap_or_else(|_| panic!("Citus worker port {port}"));
        let mut worker = PgConnection::connect_with(&options.clone().host(host).port(port))
            .await
            .unwrap_or_else(|error| panic!("cannot connect to the Citus worker {host}:{port}: {error}"));
        sqlx::query("CREATE EXTENSION IF NOT EXISTS citus")
            .execute(&mut worker)
            .await
            .unwrap_or_else(|error| panic!("cannot create the citus extension on {host}:{port}: {error}"));
        let _ = worker.close().await;
    }
    let mut coordinator = PgConnection::connect_with(&options)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to the test database {url}: {error}"));
    sqlx::query("CREATE EXTENSION IF NOT EXISTS citus")
        .execute(&mut coordinator)
        .await
        .unwrap_or_else(|error| panic!("citus extension: {error}"));
    sqlx::query("SELECT citus_set_coordinator_host($1, $2)")
        .bind(options.get_host())
        .bind(i32::from(options.get_port()))
        .execute(&mut coordinator)
        .await
        .unwrap_or_else(|error| panic!("cannot register the Citus coordinator: {error}"));
    for (host, port) in workers {
        // The coordinator opens a fresh connection to the worker for this; on a
        // busy two-core CI machine that has been seen to fail once ("failure on
        // connection marked as essential") and succeed when asked again.
        // Adding a node that is already there is a no-op, so asking again is safe.
        let mut failures = Vec::new();
        while failures.len() < CITUS_ADD_NODE_ATTEMPTS {
            match sqlx::query("SELECT citus_add_node($1, $2)")
                .bind(host)
                .bind(port)
                .execute(&mut coordinator)
                .await
            {
                Ok(_) => break,
                Err(error) => {
                    failures.push(error.to_string());
                    if failures.len() < CITUS_ADD_NODE_ATTEMPTS {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
        }
        if failures.len() == CITUS_ADD_NODE_ATTEMPTS {
            panic!(
                "cannot add the Citus worker {host}:{port} after {CITUS_ADD_NODE_ATTEMPTS} attempts: {}",
                failures.join("; ")
            );
        }
    }
    let _ = coordinator.close().await;
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// The admin URL of the test server, found once per process.
pub fn server_url() -> String {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    let found = SERVER.get_or_init(|| {
        // Resolution blocks (initdb, Docker); keep it off any async runtime.
        std::thread::spawn(find_server).join().unwrap_or_else(|_| Err("server discovery panicked".into()))
    });
    match found {
        Ok(url) => url.clone(),
        Err(reasons) => panic!("{reasons}"),
    }
}

fn find_server() -> Result<String, String> {
    resolve_server(std::env::var(TEST_DATABASE_URL_VAR).ok(), start_throwaway_cluster, start_container)
}

/// The resolution order, with each way to get a server passed in.
fn resolve_server(
    url: Option<String>,
    throwaway_cluster: impl FnOnce() -> Result<String, String>,
    container: impl FnOnce() -> Result<String, String>,
) -> Result<String, String> {
    if let Some(url) = url.filter(|url| !url.trim().is_empty()) {
        return Ok(url);
    }
    let cluster_failure = match throwaway_cluster() {
        Ok(url) => return Ok(url),
        Err(reason) => reason,
    };
    let docker_failure = match container() {
        Ok(url) => return Ok(url),
        Err(reason) => reason,
    };
    Err(format!(
        "no PostgreSQL available for the tests. Provide one of:\n\
         1. {TEST_DATABASE_URL_VAR}=postgres://postgres@127.0.0.1:5432/postgres (a server whose role may CREATE DATABASE): not set;\n\
         2. PostgreSQL server binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql/*/bin, for a throwaway cluster: {cluster_failure};\n\
         3. a Docker engine, for testcontainers' Postgres module: {docker_failure}."
    ))
}

fn postgres_bin_dir() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                // A symlink on PATH (e.g. /usr/local/bin/initdb): the real folder also
                // holds the other server tools (pg_basebackup).
                let real = dir.join("initdb").canonicalize().ok();
                return Some(real.and_then(|initdb| initdb.parent().map(Path::to_path_buf)).unwrap_or(dir));
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
    listener.local_addr().map(|address| address.port()).map_err(|error| error.to_string())
}

/// Tests trade durability for speed: a lost test database costs nothing.
const TEST_CLUSTER_SETTINGS: &str = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off";

fn start_throwaway_cluster() -> Result<String, String> {
    start_cluster(TEST_CLUSTER_SETTINGS)
}

/// A throwaway cluster like the tests' (free port, temporary folder, removed
/// when this process exits) but with PostgreSQL's durable defaults (`fsync`,
/// `synchronous_commit`, `full_page_writes` on): for benchmarks, whose numbers
/// mean nothing without durability. Returns its admin URL.
pub fn start_durable_cluster() -> Result<String, String> {
    start_cluster("")
}

fn start_cluster(settings: &str) -> Result<String, String> {
    let cluster = Cluster::start(settings)?;
    let url = cluster.url();
    // Lives as long as the process: its watchdog stops it and removes the folder at exit.
    std::mem::forget(cluster);
    Ok(url)
}

/// A throwaway PostgreSQL cluster this process controls, for tests that crash
/// and restart the database: a free port, a temporary folder, run as the
/// `postgres` user when the process is root. Dropping it stops it and removes
/// the folder; a watchdog does the same if the process dies first.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    folder: PathBuf,
    data: PathBuf,
    port: u16,
    options: String,
}

impl Cluster {
    /// Initialises and starts a cluster with extra server `settings` (e.g.
    /// `-c fsync=off`; empty for PostgreSQL's durable defaults).
    pub fn start(settings: &str) -> Result<Cluster, String> {
        let cluster = Cluster::prepare(settings)?;
        let initdb = cluster
            .as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D"])
            .arg(&cluster.data)
            .output()
            .map_err(|error| format!("initdb failed to start: {error}"))?;
        if !initdb.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&initdb.stderr).trim()));
        }
        cluster.watch_over()?;
        cluster.resume()?;
        Ok(cluster)
    }

    /// A folder and a port for a new cluster (nothing started yet).
    fn prepare(settings: &str) -> Result<Cluster, String> {
        let bin = postgres_bin_dir().ok_or("initdb and pg_ctl were not found")?;
        let folder = std::env::temp_dir().join(format!("invario-pg-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(&folder)
            .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres"]).arg(&folder).status();
            if !status.is_ok_and(|status| status.success()) {
                return Err("running as root and cannot hand the folder to the postgres user".into());
            }
        }
        let data = folder.join("data");
        let port = free_port()?;
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=300 {settings}",
            folder.display()
        );
        Ok(Cluster { bin, folder, data, port, options })
    }

    /// A streaming-replication standby of this cluster (`pg_basebackup -R`),
    /// started and following it. It becomes synchronous once the primary names
    /// it in `synchronous_standby_names`.
    pub fn start_standby(&self) -> Result<Cluster, String> {
        let standby = Cluster::prepare("")?;
        let backup = standby
            .as_postgres("pg_basebackup")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
            .args(["-X", "stream", "-R", "--no-sync", "-D"])
            .arg(&standby.data)
            .output()
            .map_err(|error| format!("pg_basebackup failed to start: {error}"))?;
        if !backup.status.success() {
            return Err(format!("pg_basebackup failed: {}", String::from_utf8_lossy(&backup.stderr).trim()));
        }
        standby.watch_over()?;
        standby.resume()?;
        Ok(standby)
    }

    /// Promotes a standby to a primary (`pg_ctl promote`), waiting until it accepts writes.
    pub fn promote(&self) -> Result<(), String> {
        self.pg_ctl(&["-w", "-t", "60", "promote"])
    }

    /// Its admin URL (database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it the way a crash does (`pg_ctl stop -m immediate`: no checkpoint,
    /// connections cut, recovery from the WAL at the next start).
    pub fn crash(&self) -> Result<(), String> {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"])
    }

    /// Starts it again after [`Cluster::crash`], waiting until it accepts connections.
    pub fn resume(&self) -> Result<(), String> {
        let log = self.folder.join("log");
        let output = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &self.options, "-l"])
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .output()
            .map_err(|error| format!("pg_ctl failed to start: {error}"))?;
        if !output.status.success() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "pg_ctl start failed: {} {log}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let output = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .output()
            .map_err(|error| format!("pg_ctl failed to start: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("pg_ctl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim()))
        }
    }

    fn as_postgres(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if is_root() {
            // PostgreSQL refuses to run as root.
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// A watchdog that stops the cluster and removes the folder once this process exits.
    fn watch_over(&self) -> Result<(), String> {
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {prefix}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {folder}",
            pid = std::process::id(),
            prefix = if is_root() { "runuser -u postgres -- " } else { "" },
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data.display(),
            folder = self.folder.display(),
        );
        Command::new("setsid")
            .args(["sh", "-c", &stop])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|error| format!("cannot start the cleanup watchdog: {error}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

fn start_container() -> Result<String, String> {
    use testcontainers::runners::SyncRunner;
    static CONTAINER: OnceLock<testcontainers::Container<testcontainers_modules::postgres::Postgres>> =
        OnceLock::new();
    let container = testcontainers_modules::postgres::Postgres::default()
        .start()
        .map_err(|error| format!("testcontainers could not start Postgres: {error}"))?;
    let port = container.get_host_port_ipv4(5432).map_err(|error| error.to_string())?;
    let host = container.get_host().map_err(|error| error.to_string())?;
    let _ = CONTAINER.set(container);
    Ok(format!("postgres://postgres:postgres@{host}:{port}/postgres"))
}

#[cfg(test)]
mod tests {
    use super::{resolve_server, with_database};

    #[test]
    fn the_url_wins_then_the_cluster_then_docker() {
        let never = || -> Result<String, String> { panic!("must not be tried") };
        assert_eq!(resolve_server(Some("postgres://x".into()), never, never), Ok("postgres://x".into()));
        assert_eq!(resolve_server(None, || Ok("cluster".into()), never), Ok("cluster".into()));
        assert_eq!(
            resolve_server(Some(" ".into()), || Err("no".into()), || Ok("docker".into())),
            Ok("docker".into())
        );
    }

    #[test]
    fn with_no_server_the_failure_names_all_three_ways() {
        let message =
            resolve_server(None, || Err("initdb not found".into()), || Err("no Docker".into())).unwrap_err();
        assert!(message.contains("INVARIO_TEST_DATABASE_URL="), "{message}");
        assert!(message.contains("(initdb, pg_ctl)") && message.contains("initdb not found"), "{message}");
        assert!(message.contains("testcontainers") && message.contains("no Docker"), "{message}");
    }

    #[test]
    fn replaces_the_database_name_and_keeps_options() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
