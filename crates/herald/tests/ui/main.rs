//! The dashboard in a real browser: headless Chromium driven through WebDriver
//! (`chromedriver`, named by `HERALD_TEST_CHROMEDRIVER`) against a real herald on
//! SQLite and a real receiver. Each page visited is saved as a screenshot under
//! the test's temporary directory (kept, and printed, when
//! `HERALD_TEST_SCREENSHOTS` names a directory).

/// The store these tests run on.
const BACKEND: helpers::Backend = helpers::Backend::Sqlite;

macro_rules! browser_test {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(not(herald_browser), ignore = "set HERALD_TEST_CHROMEDRIVER to run the browser tests")]
        async fn $name() $body
    };
}

mod browser;
mod dashboard;
#[path = "../it/helpers.rs"]
mod helpers;
