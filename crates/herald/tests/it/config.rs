//! Configuration through the real binary: file < environment < flags, a bad value
//! stops start-up naming it, secrets are masked.

use std::process::{Command, Output};

fn herald(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.args(args).env_clear();
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the herald binary runs")
}

#[test]
fn file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1111\"\nlog_level = \"debug\"\n[circuit_breaker]\nfailure_threshold = 9\n").unwrap();
    let out = herald(
        &["config"],
        &[
            ("HERALD_CONFIG", file.to_str().unwrap()),
            ("HERALD_LOG_LEVEL", "warn"),
            ("HERALD_CIRCUIT_BREAKER__OPEN_SECONDS", "12"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:1111\""), "{text}");
    assert!(text.contains("log_level = \"warn\""), "{text}");
    assert!(text.contains("failure_threshold = 9"), "{text}");
    assert!(text.contains("open_seconds = 12"), "{text}");

    let flagged = dir.path().join("flag.db");
    let out = herald(
        &[
            "migrate",
            "--database-url",
            &format!("sqlite://{}", flagged.display()),
        ],
        &[(
            "HERALD_DATABASE_URL",
            &format!("sqlite://{}", dir.path().join("env.db").display()),
        )],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(flagged.exists(), "the flag wins over the environment");
    assert!(!dir.path().join("env.db").exists());
}

#[test]
fn a_bad_value_stops_start_up_naming_it() {
    for (name, value, mention) in [
        ("HERALD_MAX_BODY_BYTES", "lots", "max_body_bytes"),
        ("HERALD_LISTEN", "not-an-address", "listen"),
        ("HERALD_DATABASE_URL", "mysql://x", "database_url"),
        ("HERALD_MASTER_KEY", "c2hvcnQ=", "master_key"),
        (
            "HERALD_RETRY_POLICY__MAX_RETRIES",
            "1000",
            "retry_policy.max_retries",
        ),
        ("HERALD_UNKNOWN_SETTING", "1", "unknown_setting"),
    ] {
        let out = herald(&["serve"], &[(name, value)]);
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(mention), "{name}={value}: {stderr}");
    }
}

#[test]
fn secrets_are_masked_when_printed() {
    let out = herald(
        &["config"],
        &[
            ("HERALD_ADMIN_TOKEN", "super-secret-admin"),
            ("HERALD_ALLOW_NETWORKS", "127.0.0.0/8, 10.0.0.0/8"),
            (
                "HERALD_DATABASE_URL",
                "postgres://herald:db-password-42@db.example:5432/herald",
            ),
            (
                "HERALD_MASTER_KEY",
                "YmVuY2gtbWFzdGVyLWtleS0zMi1ieXRlcy1sb25nLi4=",
            ),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("super-secret-admin"), "{text}");
    assert!(!text.contains("db-password-42"), "{text}");
    assert!(
        text.contains("postgres://herald:********@db.example"),
        "{text}"
    );
    assert!(text.contains("admin_token = \"********\""), "{text}");
    assert!(text.contains("10.0.0.0/8"), "{text}");
}
