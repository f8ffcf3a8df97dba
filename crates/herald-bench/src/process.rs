//! herald as the benchmark runs it: the release binary beside this one, in a
//! process of its own, so its memory and CPU time can be read from /proc.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Herald {
    child: Child,
    pub base: String,
}

fn binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name("herald");
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it with `cargo build --release -p herald`",
        path.display()
    );
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One series of the /metrics of the herald at `base`, named as it is printed
/// (labels included).
pub async fn metric(base: &str, series: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no {series} in /metrics"))
}

impl Herald {
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(binary()?);
        command
            .arg("serve")
            .env_clear()
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_LOG_LEVEL", "error")
            // Any key: each run starts from an empty database.
            .env(
                "HERALD_MASTER_KEY",
                "YmVuY2gtbWFzdGVyLWtleS0zMi1ieXRlcy1sb25nLi4=",
            )
            // The receiver lives on loopback.
            .env("HERALD_ALLOW_NETWORKS", "127.0.0.0/8")
            .stdout(Stdio::null());
        if crate::run::TENANT_TOKENS.load(std::sync::atomic::Ordering::Relaxed) {
            command.env("HERALD_ADMIN_TOKEN", crate::run::ADMIN_TOKEN);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let herald = Self {
            child: command.spawn()?,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", herald.base)).send().await {
                if r.status().is_success() {
                    return Ok(herald);
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "herald did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.child.id())).unwrap_or_default()
    }

    fn status_mib(&self, field: &str) -> f64 {
        self.proc_file("status")
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// Peak resident memory, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    /// One series of herald's /metrics, named as it is printed (labels included).
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        metric(&self.base, series).await
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = self.proc_file("stat");
        let after_name = stat.rsplit(')').next().unwrap_or_default();
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
            .sum();
        ticks / 100.0
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
