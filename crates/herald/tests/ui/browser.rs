//! A headless Chromium for one test: its own chromedriver on a free port, its own
//! empty profile, and screenshots into a directory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub struct Browser {
    pub client: Client,
    driver: Child,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(shots: &Path) -> Self {
        // The WebDriver client speaks plain HTTP to chromedriver, but its rustls
        // needs a provider chosen.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let chromedriver = std::env::var("HERALD_TEST_CHROMEDRIVER")
            .expect("HERALD_TEST_CHROMEDRIVER names chromedriver");
        let chromium =
            std::env::var("HERALD_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = crate::helpers::free_port();
        // Its own process group: the browsers it starts go with it when a failing
        // test drops it without ending the session.
        let driver = Command::new(chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("a profile dir");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::rustls()
                .expect("a TLS config")
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session within 30 s: {e}"),
            }
        };
        std::fs::create_dir_all(shots).expect("a screenshot dir");
        Self {
            client,
            driver,
            shots: shots.to_path_buf(),
            _profile: profile,
        }
    }

    /// Opens a path of herald's.
    pub async fn open(&self, base: &str, path: &str) {
        self.client
            .goto(&format!("{base}{path}"))
            .await
            .expect("the page loads");
    }

    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("a URL")
            .path()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.client.source().await.expect("the page source")
    }

    /// The text of the first element `css` finds, waiting for it to appear.
    pub async fn text(&self, css: &str) -> String {
        self.wait_text(css, |_| true).await
    }

    /// Waits until the element `css` finds has a text `check` accepts (the page may
    /// still be navigating); returns that text.
    pub async fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = None;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = element.text().await {
                    if check(&text) {
                        return text;
                    }
                    last = Some(text);
                }
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed the expected text; last: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the current page's path is `path`.
    pub async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            assert!(Instant::now() < deadline, "still at {now}, not {path}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the current page's source satisfies `check` (no reload).
    pub async fn wait_source(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let source = self.source().await;
            if check(&source) {
                return source;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} on the page: {e}"))
            .click()
            .await
            .expect("it clicks");
    }

    /// Saves the page as `name`.png.
    pub async fn shot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }

    /// Waits, reloading, until the page at `path` satisfies `check`.
    pub async fn until(
        &self,
        base: &str,
        path: &str,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.open(base, path).await;
            let source = self.source().await;
            if check(&source) {
                return source;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} at {path}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs in with `token` through the form.
    pub async fn sign_in(&self, base: &str, token: &str) {
        self.open(base, "/ui/login").await;
        let form = self
            .client
            .form(Locator::Css("form#login"))
            .await
            .expect("the sign-in form");
        form.set_by_name("token", token)
            .await
            .expect("the token field");
        form.submit().await.expect("the form submits");
        // Signed in (off the form), or refused (the form again, with its error).
        self.wait_source("the sign-in answer", |s| {
            !s.contains("id=\"login\"") || s.contains("class=\"error\"")
        })
        .await;
    }

    pub async fn close(self) {
        let client = self.client.clone();
        let _ = client.close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group this test started: chromedriver and its browsers.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}
