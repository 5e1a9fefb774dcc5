//! The real binary: configuration errors, CLI subcommands.

use std::process::Command;

fn onsale() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onsale"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn invalid_configuration_stops_with_one_line_naming_the_variable() {
    let cases = [
        ("DATABASE_URL", "mysql://nope"),
        ("HOLD_TTL_SECS", "ten"),
        ("HOLD_TTL_SECS", "0"),
        ("BIND_ADDR", "not-an-address"),
        ("JWT_SECRET", "short"),
        ("LOG_FORMAT", "xml"),
        ("REDIS_URL", "http://localhost"),
        ("STRIPE_SECRET_KEY", "pk_test_public"),
        ("SEAT_GATE", "maybe"),
    ];
    for (var, value) in cases {
        let out = onsale()
            .arg("migrate")
            .env(var, value)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {var}={value}: {stderr}");
        assert!(lines[0].contains(var), "names {var}: {stderr}");
    }
}

#[test]
fn token_and_export_schema_subcommands() {
    let out = onsale()
        .args(["token", "--sub", "alice", "--admin", "--ttl", "60"])
        .env("JWT_SECRET", "a-long-enough-secret-123")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let claims: serde_json::Value = {
        use base64::Engine;
        let payload = token.split('.').nth(1).expect("a JWT");
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .expect("base64"),
        )
        .expect("json")
    };
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["role"], "admin");
    let out = onsale().arg("export-schema").output().expect("runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), onsale::graphql::sdl());
}
