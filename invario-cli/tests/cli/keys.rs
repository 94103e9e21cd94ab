//! API keys from the CLI: the guide's lines, refusals, revocation over HTTP, listings without secrets.

use invario_testkit::harness::fresh_database;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn create_key_prints_the_guides_three_lines_and_bad_input_creates_nothing() {
    let database = fresh_database().await;
    created_key(&invario(
        &database,
        &["create-key", "--owner", "ClientName", "--scopes", r#"{"write": true}"#],
    ));
    for (args, message) in [
        (
            vec!["create-key", "--owner", "ClientName", "--scopes", r#"{"delete": true}"#],
            "unknown scope \"delete\"",
        ),
        (vec!["create-key", "--owner", "ClientName", "--scopes", "write"], "scopes must be JSON"),
        (vec!["create-key", "--owner", " ", "--scopes", r#"{"read": true}"#], "owner must not be empty"),
        (
            vec!["create-key", "--owner", "X", "--scopes", r#"{"read": true}"#, "--expires-in", "soon"],
            "expires-in",
        ),
    ] {
        let output = invario(&database, &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).contains(message), "{args:?}: {}", text(&output.stderr));
    }
    let listing = text(&invario(&database, &["list-keys"]).stdout);
    assert_eq!(listing.lines().count(), 2, "one header and the one good key:\n{listing}");
}

#[tokio::test]
async fn a_key_works_over_http_until_revoked_and_listings_never_show_secrets() {
    let database = fresh_database().await;
    let key = created_key(&invario(
        &database,
        &[
            "create-key",
            "--owner",
            "ClientName",
            "--scopes",
            r#"{"write": true, "read": true}"#,
            "--expires-in",
            "90d",
        ],
    ));
    let server = serve(&database).await;
    let client = reqwest::Client::new();
    let post = || {
        client
            .post(format!("{}/v1/transactions", server.address))
            .bearer_auth(&key)
            .json(&json!({"transaction_id": uuid::Uuid::from_u128(1).to_string(), "amount": "100.50", "currency": "BRL"}))
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 201);

    let listing = text(&invario(&database, &["list-keys", "--owner", "ClientName"]).stdout);
    assert!(listing.contains(&key[..17]) && !listing.contains(&key[17..]), "{listing}");
    assert!(listing.contains("write,read") && listing.contains("active until"), "{listing}");

    let revoked = invario(&database, &["revoke-key", "--owner", "ClientName"]);
    assert!(revoked.status.success());
    assert_eq!(text(&revoked.stdout), "🔒 Revoked 1 active key(s) for 'ClientName'\n");
    assert_eq!(post().await.unwrap().status(), 401, "the very next request is refused");
    assert!(text(&invario(&database, &["list-keys"]).stdout).contains("revoked"));

    let other = created_key(&invario(
        &database,
        &["create-key", "--owner", "ClientName", "--scopes", r#"{"read": true}"#],
    ));
    let by_prefix = invario(&database, &["revoke-key", "--prefix", &other[..17]]);
    assert!(by_prefix.status.success(), "{}", text(&by_prefix.stderr));
    let again = invario(&database, &["revoke-key", "--prefix", &other[..17]]);
    assert_eq!(again.status.code(), Some(2));
}
