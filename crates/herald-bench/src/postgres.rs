//! A PostgreSQL schema of its own for each run of the postgres scenarios.

pub(crate) struct TempSchema {
    url: String,
    name: String,
}

impl TempSchema {
    pub(crate) async fn create(url: &str) -> anyhow::Result<Self> {
        let name = format!(
            "herald_bench_{}",
            std::process::id() as u64 * 1000 + rand_suffix()
        );
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&pool)
            .await?;
        pool.close().await;
        Ok(Self {
            url: url.to_string(),
            name,
        })
    }

    pub(crate) fn url(&self) -> String {
        herald_store::postgres::test_schema::with_search_path(&self.url, &self.name)
    }

    pub(crate) async fn drop_now(self) -> anyhow::Result<()> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.url)
            .await?;
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&pool)
            .await?;
        pool.close().await;
        Ok(())
    }
}

pub(crate) fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64 % 1000)
}
