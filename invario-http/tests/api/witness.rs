//! The witness server under the API's house rules: the same listener limits
//! (a client trickling its headers is cut off while others are served), a
//! route table (404, 405 + `Allow`, 413 above the body limit) and a
//! correlation id on every answer. Its tlog-witness behaviour end to end is in
//! invario-cli's `witness` tests.

use std::time::Duration;

use invario_core::checkpoint::Checkpoint;
use invario_core::merkle::empty_root;
use invario_core::note::{ALGORITHM_COSIGNATURE, ALGORITHM_ED25519, SignerKey};
use invario_http::{HttpLimits, MAX_ADD_CHECKPOINT_BYTES, WitnessConfig, serve_witness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const ORIGIN: &str = "ledger.test/witnessed";

struct Witness {
    address: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    state_dir: std::path::PathBuf,
}

impl Witness {
    async fn start(http: HttpLimits) -> Witness {
        let key = SignerKey::from_seed("witness.test/w1", ALGORITHM_COSIGNATURE, [4; 32]).unwrap();
        let state_dir = std::env::temp_dir().join(format!("invario-witness-test-{}", uuid::Uuid::new_v4()));
        let config =
            WitnessConfig { key, logs: vec![log_key().verifier()], state_dir: state_dir.clone(), http };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve_witness(listener, config, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Witness { address, client: reqwest::Client::new(), stop: Some(stop), task, state_dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        self.task.await.unwrap();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

fn log_key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, ALGORITHM_ED25519, [3; 32]).unwrap()
}

/// A first submission (`old 0`, no proof) of the log's signed empty tree.
fn first_submission() -> String {
    let checkpoint = Checkpoint {
        origin: ORIGIN.into(),
        head: invario_core::merkle::TreeHead { size: 0, root: empty_root() },
    };
    format!("old 0\n\n{}", checkpoint.sign(&log_key()).unwrap().to_text())
}

#[tokio::test]
async fn the_witness_cuts_off_a_client_that_trickles_its_headers_and_serves_the_others() {
    let witness = Witness::start(HttpLimits {
        header_read_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(&witness.address).await.unwrap();
    slow.write_all(b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = slow.write_all(b"X").await;
        // Others are served meanwhile: a malformed submission is answered 400 at once.
        let other = witness.client.post(witness.url("/add-checkpoint")).body("garbage").send().await.unwrap();
        assert_eq!(other.status(), 400);
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    witness.stop().await;
}

#[tokio::test]
async fn the_witness_answers_from_its_route_table_with_a_correlation_id() {
    let witness = Witness::start(HttpLimits::default()).await;
    let cosigned = witness
        .client
        .post(witness.url("/add-checkpoint"))
        .header("x-correlation-id", "audit-42")
        .body(first_submission())
        .send()
        .await
        .unwrap();
    assert_eq!(cosigned.status(), 200);
    assert_eq!(cosigned.headers()["x-correlation-id"], "audit-42");
    assert!(cosigned.text().await.unwrap().starts_with("\u{2014} witness.test/w1 "));

    let wrong_method = witness.client.get(witness.url("/add-checkpoint")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    assert!(wrong_method.headers()["x-correlation-id"].to_str().unwrap().starts_with("req_"));

    let unknown =
        witness.client.post(witness.url("/checkpoint")).body(first_submission()).send().await.unwrap();
    assert_eq!(unknown.status(), 404);

    let oversized = "x".repeat(usize::try_from(MAX_ADD_CHECKPOINT_BYTES).unwrap() + 1);
    let refused = witness.client.post(witness.url("/add-checkpoint")).body(oversized).send().await.unwrap();
    assert_eq!(refused.status(), 413);

    // The refusals changed nothing: the witness still holds size 0, so the same tree from `old 0` is cosigned again.
    let again =
        witness.client.post(witness.url("/add-checkpoint")).body(first_submission()).send().await.unwrap();
    assert_eq!(again.status(), 200);
    witness.stop().await;
}
