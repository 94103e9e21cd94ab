//! The ledgers a server serves: one runtime per ledger (its `Ledger`, its
//! group-commit appender, its integrity monitor and checkpointer), started
//! for every ledger at start-up and, for a ledger created later (by `POST
//! /v1/ledgers` or `invario ledger create` on any instance), on its first
//! request. A broken ledger is quarantined alone: the others keep appending.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use invario_core::{Ledger, LedgerCatalog, LedgerName, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::appender::Appender;
use crate::checkpointer::{CheckpointSettings, LatestCheckpoint};
use crate::error::ApiError;
use crate::witness_client::WitnessSizes;
use crate::{ServiceConfig, checkpointer, monitor};

/// One ledger as the server runs it.
pub(crate) struct LedgerRuntime<S> {
    /// Its name.
    pub(crate) name: LedgerName,
    /// The core service over its store.
    pub(crate) ledger: Arc<Ledger<S>>,
    /// Its group commit of single requests.
    pub(crate) appender: Appender,
    /// Its latest signed checkpoint, when the service signs them.
    pub(crate) checkpoints: Option<LatestCheckpoint>,
    /// How a write may wait for a checkpoint covering it (when the service signs them).
    pub(crate) proof_wait: Option<ProofWaitSettings>,
}

/// What bounds a write's wait for its checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct ProofWaitSettings {
    /// Longest it waits.
    pub(crate) limit: std::time::Duration,
    /// The witness quorum `wait=witnessed` must meet.
    pub(crate) quorum: usize,
    /// Whether any witness is configured (`wait=witnessed` cannot be met without one).
    pub(crate) witnessed: bool,
    /// The policy whose rule `wait=witnessed` must meet, if the service has one.
    pub(crate) policy: Option<Arc<invario_core::policy::Policy>>,
}

/// The tasks started for the ledgers: appenders end once their runtimes are
/// dropped; monitors and checkpointers once the stop signal is sent.
#[derive(Default)]
pub(crate) struct LedgerTasks {
    pub(crate) appenders: Vec<JoinHandle<()>>,
    pub(crate) background: Vec<JoinHandle<()>>,
}

/// Every ledger this server has started, by name.
pub(crate) struct Ledgers<C: LedgerCatalog> {
    catalog: C,
    config: ServiceConfig,
    running: RwLock<HashMap<LedgerName, Arc<LedgerRuntime<C::Store>>>>,
    /// Serialises starts, so a ledger is started once however many requests race for it.
    starting: tokio::sync::Mutex<()>,
    tasks: Arc<Mutex<LedgerTasks>>,
    stop: watch::Receiver<bool>,
}

impl<C: LedgerCatalog> Ledgers<C> {
    /// No ledger started yet; `stop` ends the monitors and checkpointers.
    pub(crate) fn new(catalog: C, config: ServiceConfig, stop: watch::Receiver<bool>) -> Self {
        Ledgers {
            catalog,
            config,
            running: RwLock::default(),
            starting: tokio::sync::Mutex::new(()),
            tasks: Arc::default(),
            stop,
        }
    }

    /// The catalog.
    pub(crate) fn catalog(&self) -> &C {
        &self.catalog
    }

    /// The tasks, for the shutdown to wait on.
    pub(crate) fn tasks(&self) -> Arc<Mutex<LedgerTasks>> {
        Arc::clone(&self.tasks)
    }

    /// Every started ledger, ordered by name.
    pub(crate) fn started(&self) -> Vec<Arc<LedgerRuntime<C::Store>>> {
        let mut runtimes: Vec<_> =
            self.running.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        runtimes.sort_by(|a, b| a.name.cmp(&b.name));
        runtimes
    }

    /// Starts every ledger of the catalog (each checked in full first).
    pub(crate) async fn start_all(&self) -> Result<(), StoreError> {
        for info in self.catalog.list_ledgers().await? {
            self.start(&info.name).await;
        }
        Ok(())
    }

    /// Ledger `name`'s runtime, started now if it exists but is not running
    /// yet; 404 naming it when the catalog does not hold it.
    pub(crate) async fn runtime(&self, name: &LedgerName) -> Result<Arc<LedgerRuntime<C::Store>>, ApiError> {
        if let Some(runtime) = self.running.read().unwrap_or_else(PoisonError::into_inner).get(name) {
            return Ok(Arc::clone(runtime));
        }
        if self.catalog.find_ledger(name).await?.is_none() {
            return Err(ApiError::NotFound(format!("no ledger named \"{name}\"")));
        }
        Ok(self.start(name).await)
    }

    /// Starts ledger `name` unless it runs already: a full integrity sweep
    /// (a broken ledger starts quarantined), the checkpointer's guard, then
    /// its appender, monitor and checkpointer.
    async fn start(&self, name: &LedgerName) -> Arc<LedgerRuntime<C::Store>> {
        let _one_at_a_time = self.starting.lock().await;
        if let Some(runtime) = self.running.read().unwrap_or_else(PoisonError::into_inner).get(name) {
            return Arc::clone(runtime);
        }
        let ledger = Arc::new(Ledger::new(self.catalog.store(name)));
        monitor::check(name, &ledger, monitor::Check::Full).await;
        let checkpoints =
            self.config.checkpoints.as_ref().and_then(|settings| self.checkpoint_settings(name, settings));
        let latest = LatestCheckpoint::default();
        let witness_sizes = WitnessSizes::default();
        if let Some(settings) = &checkpoints {
            checkpointer::sign_once(name, &ledger, settings, &latest, &witness_sizes).await;
        }
        let (appender, appender_task) =
            Appender::start(name.clone(), Arc::clone(&ledger), self.config.group_commit);
        let monitor_task = tokio::spawn(monitor::run(
            name.clone(),
            Arc::clone(&ledger),
            self.config.monitor,
            self.stop.clone(),
        ));
        let checkpoint_task = checkpoints.map(|settings| {
            tokio::spawn(checkpointer::run(
                name.clone(),
                Arc::clone(&ledger),
                settings,
                latest.clone(),
                witness_sizes,
                self.stop.clone(),
            ))
        });
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            tasks.appenders.push(appender_task);
            tasks.background.push(monitor_task);
            tasks.background.extend(checkpoint_task);
        }
        let proof_wait = self.config.checkpoints.as_ref().map(|settings| ProofWaitSettings {
            limit: settings.proof_wait,
            quorum: settings.quorum,
            witnessed: !settings.witnesses.is_empty(),
            policy: settings.policy.clone().map(Arc::new),
        });
        let runtime = Arc::new(LedgerRuntime {
            name: name.clone(),
            ledger,
            appender,
            checkpoints: self.config.checkpoints.as_ref().map(|_| latest),
            proof_wait,
        });
        self.running
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone(), Arc::clone(&runtime));
        tracing::info!(event = "ledger_started", ledger = %name);
        runtime
    }

    /// The checkpoint settings of ledger `name`: the service's key under the
    /// ledger's origin and its own folder of the sink (both the service's own
    /// for `default`: see `SignerKey::for_ledger` and `Sink::for_ledger`), the same
    /// witnesses and quorum (each witness must trust the ledger's verifier
    /// key, `invario checkpoint-key show --ledger NAME`, or it refuses).
    fn checkpoint_settings(
        &self,
        name: &LedgerName,
        settings: &CheckpointSettings,
    ) -> Option<CheckpointSettings> {
        let refused = |what: &str, error: String| {
            tracing::error!(event = "checkpoint_setup_failed", ledger = %name, error = %error, "{what}");
        };
        let signer = name
            .signer_key(&settings.signer)
            .map_err(|error| refused("no checkpoint key for this ledger", error.to_string()))
            .ok()?;
        let sink = settings
            .sink
            .for_ledger(name)
            .map_err(|error| refused("no checkpoint folder for this ledger", error.to_string()))
            .ok()?;
        Some(CheckpointSettings { signer, sink, ..settings.clone() })
    }
}
