//! Studies and live trials: define-by-run suggestions, ask/tell, and `optimize` on top.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::distribution::{Distribution, ParamValue};
use crate::error::{Result, TrialError, TuneError};
use crate::pruner::{NopPruner, Pruner};
use crate::sampler::{Sampler, TpeSampler};
use crate::storage::{InMemoryStorage, Storage};
use crate::trial::{
    Direction, FrozenTrial, History, Param, TrialState, Trials, FAILED_TRIAL, RETRY_HISTORY,
};

/// A study: a named, stored series of trials of one objective, with a sampler and a pruner.
/// Cheap to clone (the clones share everything); `optimize` runs trials on several threads.
#[derive(Clone)]
pub struct Study {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    name: String,
    direction: Direction,
    storage: Arc<dyn Storage>,
    sampler: Box<dyn Sampler>,
    pruner: Box<dyn Pruner>,
    /// Distributions seen by this process, so that two threads cannot define one parameter
    /// two ways before either has stored a trial.
    known: Mutex<Known>,
    liveness: Liveness,
}

/// The distributions of the study's parameters, and which finished trials were read for them
/// (finished trials never change, so each is read once).
#[derive(Default)]
struct Known {
    distributions: BTreeMap<String, Distribution>,
}

/// Builds a [`Study`]: `Study::builder("name").maximize().sampler(...).build()`.
pub struct StudyBuilder {
    name: String,
    direction: Direction,
    storage: Option<Arc<dyn Storage>>,
    sampler: Option<Box<dyn Sampler>>,
    pruner: Option<Box<dyn Pruner>>,
    load_if_exists: bool,
    liveness: Liveness,
}

/// How a study tells that a trial's worker is gone, and what it does then.
#[derive(Clone, Copy, Debug, Default)]
struct Liveness {
    /// Record a heartbeat this often while a trial runs.
    heartbeat: Option<Duration>,
    /// A running trial whose heartbeat is older than this is failed (default 2 x heartbeat).
    grace: Option<Duration>,
    /// Re-enqueue a stale trial's parameters at most this many times along its chain.
    retry_failed: u32,
}

impl Liveness {
    fn grace(&self) -> Option<Duration> {
        self.grace.or(self.heartbeat.map(|h| h * 2))
    }
}

impl StudyBuilder {
    /// Minimize the objective (the default).
    pub fn minimize(mut self) -> Self {
        self.direction = Direction::Minimize;
        self
    }

    /// Maximize the objective.
    pub fn maximize(mut self) -> Self {
        self.direction = Direction::Maximize;
        self
    }

    /// Sets the direction.
    pub fn direction(mut self, d: Direction) -> Self {
        self.direction = d;
        self
    }

    /// Where trials live (default: in memory).
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The sampler (default: TPE with seed 0).
    pub fn sampler(mut self, sampler: impl Sampler + 'static) -> Self {
        self.sampler = Some(Box::new(sampler));
        self
    }

    /// The pruner (default: none).
    pub fn pruner(mut self, pruner: impl Pruner + 'static) -> Self {
        self.pruner = Some(Box::new(pruner));
        self
    }

    /// Resume the study if the storage already has one of this name (default: it is an
    /// error).
    pub fn load_if_exists(mut self, yes: bool) -> Self {
        self.load_if_exists = yes;
        self
    }

    /// Records a heartbeat every `interval` while a trial of [`Study::optimize`] runs; a
    /// running trial whose heartbeat is older than the grace period (2 x `interval` unless
    /// [`StudyBuilder::grace_period`] says) is failed by whichever worker notices, on any
    /// machine (Optuna's `heartbeat_interval`).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.liveness.heartbeat = Some(interval);
        self
    }

    /// How old a heartbeat may get before its trial counts as stale.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.liveness.grace = Some(grace);
        self
    }

    /// Re-enqueues the parameters of a trial failed as stale (by heartbeat or a local
    /// process that ended) as a new trial that records which trial it retries
    /// (`failed_trial`, `retry_history`, as Optuna's `RetryFailedTrialCallback`), at most `n`
    /// times along one chain of retries.
    pub fn retry_failed(mut self, n: u32) -> Self {
        self.liveness.retry_failed = n;
        self
    }

    /// Creates (or, with [`StudyBuilder::load_if_exists`], resumes) the study.
    pub fn build(self) -> Result<Study> {
        let storage = self
            .storage
            .unwrap_or_else(|| Arc::new(InMemoryStorage::new()));
        let record = match storage.find_study(&self.name)? {
            Some(rec) if self.load_if_exists => {
                if rec.direction != self.direction {
                    return Err(TuneError::DirectionMismatch {
                        name: rec.name,
                        stored: rec.direction,
                        asked: self.direction,
                    });
                }
                rec
            }
            Some(_) => {
                return Err(TuneError::StudyExists {
                    name: self.name,
                    storage: storage.describe(),
                })
            }
            None => match storage.create_study(&self.name, self.direction) {
                // Another process created it between our look and our write.
                Err(TuneError::StudyExists { .. }) if self.load_if_exists => storage
                    .find_study(&self.name)?
                    .ok_or_else(|| TuneError::InvalidValue("study vanished".into()))?,
                other => other?,
            },
        };
        Ok(Study {
            inner: Arc::new(Inner {
                id: record.id,
                name: record.name,
                direction: record.direction,
                storage,
                sampler: self.sampler.unwrap_or_else(|| Box::new(TpeSampler::new(0))),
                pruner: self.pruner.unwrap_or_else(|| Box::new(NopPruner)),
                known: Mutex::new(Known::default()),
                liveness: self.liveness,
            }),
        })
    }
}

/// How a trial ended, for [`Study::tell`].
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The objective's value.
    Complete(f64),
    /// Pruned (the trial keeps its last reported value).
    Pruned,
    /// Failed, with why.
    Fail(String),
}

/// When [`Study::optimize`] stops: whichever limit comes first.
#[derive(Clone, Debug, Default)]
pub struct OptimizeOptions {
    /// Trials to run in this call.
    pub n_trials: Option<u64>,
    /// Trials the study may hold in all (started by any process; enqueued trials that have
    /// not started do not count). Several processes given the same limit stop at exactly it.
    pub max_study_trials: Option<u64>,
    /// No new trial starts after this long.
    pub timeout: Option<Duration>,
    /// Threads running trials (0 or 1: this thread).
    pub n_jobs: usize,
    /// Set it to stop: no new trial starts (running trials see it through their objective).
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a call to [`Study::optimize`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizeSummary {
    /// Trials run by this call, by final state.
    pub complete: u64,
    /// Pruned trials.
    pub pruned: u64,
    /// Failed trials.
    pub failed: u64,
    /// Whether the stop flag ended it.
    pub stopped: bool,
}

impl Study {
    /// Starts building a study named `name`.
    pub fn builder(name: impl Into<String>) -> StudyBuilder {
        StudyBuilder {
            name: name.into(),
            direction: Direction::Minimize,
            storage: None,
            sampler: None,
            pruner: None,
            load_if_exists: false,
            liveness: Liveness::default(),
        }
    }

    /// Opens an existing study (its direction comes from the storage); for reading results
    /// or asking more trials with the default sampler.
    pub fn load(name: &str, storage: Arc<dyn Storage>) -> Result<Study> {
        let Some(rec) = storage.find_study(name)? else {
            return Err(TuneError::StudyNotFound {
                name: name.into(),
                storage: storage.describe(),
                known: storage.studies()?.into_iter().map(|s| s.name).collect(),
            });
        };
        Study::builder(name)
            .direction(rec.direction)
            .storage(storage)
            .load_if_exists(true)
            .build()
    }

    /// The study's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Minimize or maximize.
    pub fn direction(&self) -> Direction {
        self.inner.direction
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    /// Every trial, by number.
    pub fn trials(&self) -> Result<Trials> {
        self.inner.storage.trials(self.inner.id)
    }

    /// The trials as a sampler sees them.
    pub fn history(&self) -> Result<History> {
        Ok(History::new(self.trials()?, self.inner.direction))
    }

    /// The best complete trial, if any.
    pub fn best_trial(&self) -> Result<Option<Arc<FrozenTrial>>> {
        Ok(self.history()?.best().cloned())
    }

    /// Queues a trial whose parameters named here take these values (others are sampled).
    pub fn enqueue(&self, params: BTreeMap<String, ParamValue>) -> Result<u64> {
        self.inner.storage.enqueue_trial(self.inner.id, &params)
    }

    /// Marks as failed the running trials whose worker is gone: with heartbeats, those whose
    /// last heartbeat is older than the grace period (any machine); and trials started on
    /// this machine (`host:pid` owner) by a process that no longer exists, say after `kill
    /// -9`. With [`StudyBuilder::retry_failed`], each is enqueued again. Returns their numbers.
    /// [`Study::optimize`] does this before it starts, and with heartbeats checks them before
    /// every trial.
    pub fn fail_stale_trials(&self) -> Result<Vec<u64>> {
        let mut failed = self.fail_silent_trials()?;
        if !std::path::Path::new("/proc/self").exists() {
            return Ok(failed);
        }
        let host = hostname();
        for t in self.trials()?.iter() {
            if t.state != TrialState::Running {
                continue;
            }
            let Some((h, pid)) = t.owner.as_deref().and_then(|o| o.rsplit_once(':')) else {
                continue;
            };
            if h != host || pid == std::process::id().to_string() {
                continue;
            }
            if process_alive(pid) {
                continue;
            }
            let why = format!("stale: its process ({pid} on {h}) ended while it ran");
            failed.extend(self.fail_stale(t.id, &why)?);
        }
        Ok(failed)
    }

    /// Fails the running trials whose last heartbeat is older than the grace period (an
    /// indexed query: its cost does not grow with the study).
    fn fail_silent_trials(&self) -> Result<Vec<u64>> {
        let mut failed = Vec::new();
        if let Some(grace) = self.inner.liveness.grace() {
            for id in self.inner.storage.stale_trials(self.inner.id, grace)? {
                let why = format!(
                    "stale: no heartbeat for over {} s (its worker stopped, hung or lost the \
                     storage)",
                    grace.as_secs_f64()
                );
                failed.extend(self.fail_stale(id, &why)?);
            }
        }
        Ok(failed)
    }

    /// Fails a stale trial and enqueues its retry; `None` if another worker got there first.
    fn fail_stale(&self, id: u64, why: &str) -> Result<Option<u64>> {
        let storage = &self.inner.storage;
        match storage.finish_trial(id, TrialState::Fail, None, Some(why)) {
            Ok(()) => {}
            Err(TuneError::TrialFinished { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        let t = storage.trial(id)?;
        let mut history = t.retry_history();
        history.push(t.number);
        if history.len() <= self.inner.liveness.retry_failed as usize {
            let mut params = t.fixed.clone();
            for (name, p) in &t.params {
                params.entry(name.clone()).or_insert_with(|| p.value());
            }
            let attrs = BTreeMap::from([
                (
                    FAILED_TRIAL.to_string(),
                    serde_json::json!(t.retried_trial().unwrap_or(t.number)),
                ),
                (RETRY_HISTORY.to_string(), serde_json::json!(history)),
            ]);
            storage.enqueue_trial_with(self.inner.id, &params, &attrs)?;
        }
        Ok(Some(t.number))
    }

    /// Starts a trial.
    pub fn ask(&self) -> Result<Trial> {
        self.ask_limited(None)?
            .ok_or_else(|| TuneError::InvalidValue("no trial started".into()))
    }

    /// Starts a trial unless the study already holds `limit` started trials.
    pub fn ask_limited(&self, limit: Option<u64>) -> Result<Option<Trial>> {
        let owner = owner();
        let Some(frozen) = self.inner.storage.start_trial(
            self.inner.id,
            limit,
            &owner,
            self.inner.liveness.heartbeat.is_some(),
        )?
        else {
            return Ok(None);
        };
        let history = Arc::new(self.history()?);
        let relative = self.inner.sampler.sample_relative(&history, frozen.number);
        // A waiting trial that already holds parameters (an Optuna worker's retry) keeps them.
        let mut fixed = frozen.fixed;
        for (name, p) in &frozen.params {
            fixed.entry(name.clone()).or_insert_with(|| p.value());
        }
        Ok(Some(Trial {
            study: self.clone(),
            id: frozen.id,
            number: frozen.number,
            fixed,
            params: BTreeMap::new(),
            intermediate: BTreeMap::new(),
            relative,
            history,
        }))
    }

    /// Finishes a trial. A complete value of NaN is recorded as a failure.
    pub fn tell(&self, trial: Trial, outcome: Outcome) -> Result<TrialState> {
        let (state, value, message) = match outcome {
            Outcome::Complete(v) if v.is_nan() => (
                TrialState::Fail,
                None,
                Some("the objective returned NaN".to_string()),
            ),
            Outcome::Complete(v) => (TrialState::Complete, Some(v), None),
            Outcome::Pruned => (
                TrialState::Pruned,
                trial.intermediate.values().next_back().copied(),
                None,
            ),
            Outcome::Fail(m) => (TrialState::Fail, None, Some(m)),
        };
        self.inner
            .storage
            .finish_trial(trial.id, state, value, message.as_deref())?;
        Ok(state)
    }

    /// Runs the objective on new trials until a limit of `opts` is reached. A trial whose
    /// objective errors, panics or returns NaN is recorded as failed and the study goes on;
    /// a [`TuneError`] (search space, storage) stops it and is returned.
    pub fn optimize<F>(&self, objective: F, opts: &OptimizeOptions) -> Result<OptimizeSummary>
    where
        F: Fn(&mut Trial) -> Result<f64, TrialError> + Sync,
    {
        self.optimize_with_callback(objective, opts, |_| {})
    }

    /// [`Study::optimize`], calling `callback` with each trial when it has finished.
    pub fn optimize_with_callback<F, C>(
        &self,
        objective: F,
        opts: &OptimizeOptions,
        callback: C,
    ) -> Result<OptimizeSummary>
    where
        F: Fn(&mut Trial) -> Result<f64, TrialError> + Sync,
        C: Fn(&FrozenTrial) + Sync,
    {
        self.fail_stale_trials()?;
        let started = Instant::now();
        let launched = AtomicU64::new(0);
        let counts = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
        let halt = AtomicBool::new(false);
        let error: Mutex<Option<TuneError>> = Mutex::new(None);
        let limit = match (opts.max_study_trials, self.inner.sampler.max_trials()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let stopped = || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
        let worker = || {
            loop {
                if halt.load(Ordering::SeqCst) || stopped() {
                    return;
                }
                if opts.timeout.is_some_and(|t| started.elapsed() >= t) {
                    return;
                }
                if let Some(n) = opts.n_trials {
                    // Claim a slot first so that n_jobs threads run exactly n_trials.
                    if launched.fetch_add(1, Ordering::SeqCst) >= n {
                        return;
                    }
                }
                let result = match self.inner.liveness.heartbeat {
                    Some(_) => self.fail_silent_trials().map(|_| ()),
                    None => Ok(()),
                }
                .and_then(|()| self.run_one(&objective, limit));
                match result {
                    Ok(Some((state, frozen))) => {
                        let i = match state {
                            TrialState::Complete => 0,
                            TrialState::Pruned => 1,
                            _ => 2,
                        };
                        counts[i].fetch_add(1, Ordering::SeqCst);
                        callback(&frozen);
                    }
                    Ok(None) => {
                        // The study is full. With heartbeats, a trial still running elsewhere
                        // may yet go stale and come back as a retry: wait for it to end.
                        let Some(interval) = self.inner.liveness.heartbeat else {
                            return;
                        };
                        match self.trials() {
                            Ok(t) if t.iter().any(|t| t.state == TrialState::Running) => {}
                            Ok(_) => return,
                            Err(e) => {
                                halt.store(true, Ordering::SeqCst);
                                let mut slot = error.lock().unwrap_or_else(|e| e.into_inner());
                                slot.get_or_insert(e);
                                return;
                            }
                        }
                        if opts.n_trials.is_some() {
                            launched.fetch_sub(1, Ordering::SeqCst);
                        }
                        std::thread::sleep(interval);
                    }
                    Err(e) => {
                        halt.store(true, Ordering::SeqCst);
                        let mut slot = error.lock().unwrap_or_else(|e| e.into_inner());
                        slot.get_or_insert(e);
                        return;
                    }
                }
            }
        };
        let jobs = opts.n_jobs.max(1);
        if jobs == 1 {
            worker();
        } else {
            std::thread::scope(|s| {
                for _ in 0..jobs {
                    s.spawn(worker);
                }
            });
        }
        if let Some(e) = error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok(OptimizeSummary {
            complete: counts[0].load(Ordering::SeqCst),
            pruned: counts[1].load(Ordering::SeqCst),
            failed: counts[2].load(Ordering::SeqCst),
            stopped: stopped(),
        })
    }

    /// One trial from start to finish; `None` when the study is full.
    fn run_one<F>(
        &self,
        objective: &F,
        limit: Option<u64>,
    ) -> Result<Option<(TrialState, Arc<FrozenTrial>)>>
    where
        F: Fn(&mut Trial) -> Result<f64, TrialError> + Sync,
    {
        let Some(mut trial) = self.ask_limited(limit)? else {
            return Ok(None);
        };
        let id = trial.id;
        let result = std::thread::scope(|s| {
            let (done, beat) = std::sync::mpsc::channel::<()>();
            if let Some(interval) = self.inner.liveness.heartbeat {
                let storage = &self.inner.storage;
                s.spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = beat.recv_timeout(interval) {
                        // Failed as stale by another worker: nothing left to keep alive.
                        // (The storage away for a moment: the next beat tries again.)
                        if let Err(TuneError::TrialFinished { .. }) = storage.heartbeat(id) {
                            return;
                        }
                    }
                });
            }
            let result = catch_unwind(AssertUnwindSafe(|| objective(&mut trial)));
            drop(done);
            result
        });
        let (outcome, stop) = match result {
            Ok(Ok(v)) => (Outcome::Complete(v), None),
            Ok(Err(TrialError::Pruned)) => (Outcome::Pruned, None),
            Ok(Err(TrialError::Fail(m))) => (Outcome::Fail(m), None),
            Ok(Err(TrialError::Stop(e))) => (Outcome::Fail(e.to_string()), Some(e)),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string payload".into());
                (
                    Outcome::Fail(format!("the objective panicked: {msg}")),
                    None,
                )
            }
        };
        let told = self.tell(trial, outcome);
        if let Some(e) = stop {
            return Err(e);
        }
        let state = match told {
            // Another worker failed it as stale (its heartbeats did not reach the storage in
            // time): it stays failed, and this worker goes on.
            Err(TuneError::TrialFinished { state, .. }) => state,
            other => other?,
        };
        Ok(Some((state, self.inner.storage.trial(id)?)))
    }
}

/// A running trial: the objective asks it for parameters and reports progress to it.
pub struct Trial {
    study: Study,
    id: u64,
    number: u64,
    fixed: BTreeMap<String, ParamValue>,
    params: BTreeMap<String, Param>,
    intermediate: BTreeMap<u64, f64>,
    relative: BTreeMap<String, Param>,
    history: Arc<History>,
}

impl Trial {
    /// The trial's number in the study (from 0).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The parameters suggested so far.
    pub fn params(&self) -> BTreeMap<String, ParamValue> {
        self.params
            .iter()
            .map(|(n, p)| (n.clone(), p.value()))
            .collect()
    }

    /// A float in `[low, high]`.
    pub fn suggest_float(&mut self, name: &str, low: f64, high: f64) -> Result<f64> {
        self.suggest_internal(name, Distribution::float(low, high))
    }

    /// A float in `[low, high]` on a log scale.
    pub fn suggest_float_log(&mut self, name: &str, low: f64, high: f64) -> Result<f64> {
        self.suggest_internal(name, Distribution::float_log(low, high))
    }

    /// A float `low + k * step` in `[low, high]`.
    pub fn suggest_float_step(
        &mut self,
        name: &str,
        low: f64,
        high: f64,
        step: f64,
    ) -> Result<f64> {
        self.suggest_internal(name, Distribution::float_step(low, high, step))
    }

    /// An integer in `[low, high]`.
    pub fn suggest_int(&mut self, name: &str, low: i64, high: i64) -> Result<i64> {
        Ok(self.suggest_internal(name, Distribution::int(low, high))? as i64)
    }

    /// An integer in `[low, high]` on a log scale.
    pub fn suggest_int_log(&mut self, name: &str, low: i64, high: i64) -> Result<i64> {
        Ok(self.suggest_internal(name, Distribution::int_log(low, high))? as i64)
    }

    /// An integer `low + k * step` in `[low, high]`.
    pub fn suggest_int_step(&mut self, name: &str, low: i64, high: i64, step: i64) -> Result<i64> {
        Ok(self.suggest_internal(name, Distribution::int_step(low, high, step))? as i64)
    }

    /// One of `choices`.
    pub fn suggest_categorical<T: Clone + Into<ParamValue>>(
        &mut self,
        name: &str,
        choices: &[T],
    ) -> Result<T> {
        let d = Distribution::categorical(choices.iter().cloned());
        let i = self.suggest_internal(name, d)?;
        Ok(choices[i as usize].clone())
    }

    /// A value from any distribution.
    pub fn suggest(&mut self, name: &str, distribution: Distribution) -> Result<ParamValue> {
        let d = distribution.clone();
        let i = self.suggest_internal(name, distribution)?;
        Ok(d.to_external(i))
    }

    fn suggest_internal(&mut self, name: &str, d: Distribution) -> Result<f64> {
        let d = d.validated(name)?;
        if let Some(p) = self.params.get(name) {
            if p.distribution == d {
                return Ok(p.internal);
            }
            return Err(TuneError::IncompatibleDistribution {
                name: name.into(),
                before: p.distribution.to_string(),
                now: d.to_string(),
            });
        }
        {
            let mut known = self
                .study
                .inner
                .known
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !known.distributions.contains_key(name) {
                // The first time this process meets the name: what did earlier trials,
                // here or in other workers, define under it? (Looked up once per name, so
                // that a trial costs the same however long the study.)
                let earlier = self
                    .history
                    .trials
                    .iter()
                    .find_map(|t| t.params.get(name).map(|p| p.distribution.clone()));
                if let Some(before) = earlier {
                    known.distributions.insert(name.into(), before);
                }
            }
            match known.distributions.get(name) {
                Some(before) if !before.compatible(&d) => {
                    return Err(TuneError::IncompatibleDistribution {
                        name: name.into(),
                        before: before.to_string(),
                        now: d.to_string(),
                    })
                }
                Some(_) => {}
                None => {
                    known.distributions.insert(name.into(), d.clone());
                }
            }
        }
        let internal = if let Some(v) = self.fixed.get(name) {
            d.to_internal(v)
                .ok_or_else(|| TuneError::ValueOutsideDistribution {
                    name: name.into(),
                    value: v.to_string(),
                    distribution: d.to_string(),
                })?
        } else if let Some(p) = self.relative.get(name).filter(|p| p.distribution == d) {
            p.internal
        } else {
            self.study
                .inner
                .sampler
                .sample_independent(&self.history, self.number, name, &d)?
        };
        let param = Param {
            distribution: d,
            internal,
        };
        self.study.inner.storage.set_param(self.id, name, &param)?;
        self.params.insert(name.into(), param);
        Ok(internal)
    }

    /// Reports an intermediate value (validation accuracy after epoch `step`, ...).
    pub fn report(&mut self, value: f64, step: u64) -> Result<()> {
        self.study.inner.storage.report(self.id, step, value)?;
        self.intermediate.insert(step, value);
        Ok(())
    }

    /// Whether the pruner says this trial should stop now (after a [`Trial::report`]).
    pub fn should_prune(&self) -> Result<bool> {
        if self.intermediate.is_empty() {
            return Ok(false);
        }
        let history = self.study.history()?;
        let me = history
            .trials
            .iter()
            .find(|t| t.id == self.id)
            .cloned()
            .ok_or_else(|| TuneError::InvalidValue(format!("trial {} vanished", self.number)))?;
        Ok(self.study.inner.pruner.prune(&history, &me))
    }

    /// Stores a value with the trial (anything serde can write).
    pub fn set_user_attr(&mut self, key: &str, value: impl serde::Serialize) -> Result<()> {
        let v = serde_json::to_value(value)
            .map_err(|e| TuneError::InvalidValue(format!("user attribute `{key}`: {e}")))?;
        self.study.inner.storage.set_user_attr(self.id, key, &v)
    }
}

/// The trials as rows of text: a header (number, state, value, seconds, then every
/// parameter's name, sorted) and a row per trial (`-` where a trial has no such value).
pub fn trials_rows(trials: &[Arc<FrozenTrial>]) -> Vec<Vec<String>> {
    let mut names: Vec<&str> = Vec::new();
    for t in trials {
        for n in t.params.keys() {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    names.sort_unstable();
    let mut rows: Vec<Vec<String>> = vec![["number", "state", "value", "seconds"]
        .iter()
        .map(|s| s.to_string())
        .chain(names.iter().map(|s| s.to_string()))
        .collect()];
    for t in trials {
        let mut row = vec![
            t.number.to_string(),
            t.state.to_string(),
            t.value.map_or("-".into(), |v| format!("{v:.6}")),
            t.duration().map_or("-".into(), |d| format!("{d:.1}")),
        ];
        for n in &names {
            row.push(t.param(n).map_or("-".into(), |v| match v {
                ParamValue::Float(x) => format!("{x:.4e}"),
                other => other.to_string(),
            }));
        }
        rows.push(row);
    }
    rows
}

/// A plain-text table of trials: number, state, value, duration, parameters.
pub fn trials_table(trials: &[Arc<FrozenTrial>]) -> String {
    let rows = trials_rows(trials);
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// This machine's name (for trial owners).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `host:pid` of this process.
fn owner() -> String {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OWNER
        .get_or_init(|| format!("{}:{}", hostname(), std::process::id()))
        .clone()
}

/// Whether process `pid` is running (a zombie, ended but not yet reaped, is not).
fn process_alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: `123 (name) S ...`.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}
