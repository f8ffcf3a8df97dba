//! A throwaway schema for tests: each test gets its own, named by a fresh id, and
//! it is dropped with everything in it when the value is dropped.

use sqlx::postgres::PgPoolOptions;

/// A schema created in the database `url` names.
pub struct TestSchema {
    url: String,
    pub name: String,
}

/// `url` with its connections' `search_path` set to `schema`.
pub fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

impl TestSchema {
    pub async fn create(url: &str) -> Self {
        let name = format!("herald_t_{}", ulid::Ulid::new().to_string().to_lowercase());
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .expect("the test database answers");
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&pool)
            .await
            .expect("a test schema");
        pool.close().await;
        Self {
            url: url.to_string(),
            name,
        }
    }

    /// The URL whose connections use this schema.
    pub fn url(&self) -> String {
        with_search_path(&self.url, &self.name)
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&url)
                    .await
                    .ok()?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .execute(&pool)
                    .await
                    .ok()?;
                pool.close().await;
                Some(())
            })
        })
        .join();
    }
}
