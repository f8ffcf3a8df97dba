//! Marks the PostgreSQL, RabbitMQ and browser integration tests runnable when
//! their services (or chromedriver) are named.
fn main() {
    for (cfg, var) in [
        ("herald_pg", "HERALD_TEST_DATABASE_URL"),
        ("herald_amqp", "HERALD_TEST_AMQP_URL"),
        ("herald_browser", "HERALD_TEST_CHROMEDRIVER"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
