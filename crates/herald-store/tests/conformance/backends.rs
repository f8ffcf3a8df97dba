//! The backends the suite runs on, each fresh per test and removed after it.

use std::sync::Arc;

use herald_store::prelude::*;

pub struct Backend {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = herald_store::sqlite::SqliteStore::open(dir.path().join("conformance.db"))
        .await
        .unwrap();
    Backend {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

pub async fn postgres() -> Backend {
    panic!("the PostgreSQL backend is not built yet")
}
