//! The backends the suite runs on, each fresh per test and removed after it.

use std::sync::Arc;

use herald_store::postgres::test_schema::TestSchema;
use herald_store::prelude::*;

pub struct Backend {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<TestSchema>,
}

pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = herald_store::sqlite::SqliteStore::open(dir.path().join("conformance.db"), None)
        .await
        .unwrap();
    Backend {
        store: Arc::new(store),
        _dir: Some(dir),
        _schema: None,
    }
}

pub async fn postgres() -> Backend {
    let url = std::env::var("HERALD_TEST_DATABASE_URL")
        .expect("HERALD_TEST_DATABASE_URL names the test database");
    let schema = TestSchema::create(&url).await;
    let store = herald_store::postgres::PgStore::open(
        &schema.url(),
        8,
        herald_store::crypto::MasterKey::from_bytes(&[42; 32]),
    )
    .await
    .expect("the PostgreSQL store opens");
    Backend {
        store: Arc::new(store),
        _dir: None,
        _schema: Some(schema),
    }
}
