//! Failures: one line on stderr, a non-zero exit code, never the password.

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_are_one_line_without_the_password() {
    let unreachable = run_with(
        es_binary(),
        &[(
            "DATABASE_URL",
            "postgres://app:hunter2secret@127.0.0.1:1/orders",
        )],
        &["streams"],
    )
    .await
    .fails(1, "cannot connect to PostgreSQL at");
    assert!(
        !unreachable.stderr.contains("hunter2secret"),
        "{unreachable:?}"
    );
    assert!(unreachable.stderr.contains("127.0.0.1"), "{unreachable:?}");

    for url in [
        "not a url at all",
        "postgres://app:hunter2secret@127.0.0.1:notaport/orders",
        "mysql://app:hunter2secret@127.0.0.1/orders",
    ] {
        let bad = run_with(es_binary(), &[("DATABASE_URL", url)], &["projections"])
            .await
            .fails(1, "cannot connect to PostgreSQL");
        assert!(!bad.stderr.contains("hunter2secret"), "{bad:?}");
    }
    let flag = run_with(
        es_binary(),
        &[],
        &[
            "--database-url",
            "postgres://app:hunter2secret@127.0.0.1:1/orders",
            "horizon",
        ],
    )
    .await
    .fails(1, "cannot connect");
    assert!(!flag.stderr.contains("hunter2secret"), "{flag:?}");

    let mut command = assert_cmd::Command::new(es_binary());
    let output = command
        .env_remove("DATABASE_URL")
        .args(["streams"])
        .timeout(PATIENCE)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("set DATABASE_URL or pass --database-url")
    );

    // `--help` does not print the environment's URL either.
    let help = run_with(
        es_binary(),
        &[(
            "DATABASE_URL",
            "postgres://app:hunter2secret@127.0.0.1:1/orders",
        )],
        &["--help"],
    )
    .await
    .ok();
    assert!(
        help.stdout.contains("DATABASE_URL") && !help.stdout.contains("hunter2secret"),
        "{help:?}"
    );
    let invalid_schema = run_with(es_binary(), &[], &["--schema", "Bad Name", "streams"])
        .await
        .fails(1, "Bad Name");
    assert_eq!(invalid_schema.stdout, "");
}
