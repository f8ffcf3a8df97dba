//! Marks the PostgreSQL integration tests runnable when the test database is named.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(herald_pg)");
    println!("cargo::rerun-if-env-changed=HERALD_TEST_DATABASE_URL");
    if std::env::var_os("HERALD_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=herald_pg");
    }
}
