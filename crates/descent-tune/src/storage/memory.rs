//! Studies in memory: fast, shared by threads, gone when the process ends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Storage, StudyRecord};
use crate::distribution::ParamValue;
use crate::error::{Result, TuneError};
use crate::trial::{now, Direction, FrozenTrial, Param, TrialState, Trials};

/// A storage in this process's memory.
#[derive(Default)]
pub struct InMemoryStorage {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    studies: Vec<StudyRecord>,
    /// Trials by id (ids are indices).
    trials: Vec<Arc<FrozenTrial>>,
    /// The study of each trial, by trial id.
    study_of: Vec<u64>,
    by_study: BTreeMap<u64, StudyTrials>,
    /// The last heartbeat of each trial that records them.
    heartbeats: HashMap<u64, Instant>,
}

/// One study's trials, indexed so that starting a trial or taking a snapshot costs what
/// changed, not the study's length.
#[derive(Default)]
struct StudyTrials {
    /// Trial ids by number.
    ids: Vec<u64>,
    /// Waiting trials' ids, and those of them that retry a failed trial.
    waiting: BTreeSet<u64>,
    waiting_retries: BTreeSet<u64>,
    /// Retries started so far (they do not count toward a trial limit).
    started_retries: u64,
    running: BTreeSet<u64>,
    /// The last snapshot handed out, and the trials changed since.
    snapshot: Trials,
    dirty: BTreeSet<u64>,
}

impl InMemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written trial (every change is
        // one assignment), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn running(&mut self, trial: u64) -> Result<&mut FrozenTrial> {
        let t = self
            .trials
            .get_mut(trial as usize)
            .ok_or_else(|| TuneError::InvalidValue(format!("no trial with id {trial}")))?;
        if t.state != TrialState::Running {
            return Err(TuneError::TrialFinished {
                number: t.number,
                state: t.state,
            });
        }
        let study = self.study_of[trial as usize];
        if let Some(s) = self.by_study.get_mut(&study) {
            s.dirty.insert(trial);
        }
        Ok(Arc::make_mut(t))
    }

    fn study(&mut self, study: u64) -> Result<&mut StudyTrials> {
        self.by_study
            .get_mut(&study)
            .ok_or_else(|| TuneError::InvalidValue(format!("no study with id {study}")))
    }

    /// Adds a waiting trial to a study; returns its id.
    fn push_waiting(&mut self, study: u64, t: impl FnOnce(u64, u64) -> FrozenTrial) -> Result<u64> {
        let id = self.trials.len() as u64;
        let s = self.study(study)?;
        let t = t(id, s.ids.len() as u64);
        s.ids.push(id);
        s.waiting.insert(id);
        if t.retried_trial().is_some() {
            s.waiting_retries.insert(id);
        }
        s.dirty.insert(id);
        self.trials.push(Arc::new(t));
        self.study_of.push(study);
        Ok(id)
    }
}

impl Storage for InMemoryStorage {
    fn describe(&self) -> String {
        "in-memory storage".into()
    }

    fn create_study(&self, name: &str, direction: Direction) -> Result<StudyRecord> {
        let mut g = self.lock();
        if g.studies.iter().any(|s| s.name == name) {
            return Err(TuneError::StudyExists {
                name: name.into(),
                storage: self.describe(),
            });
        }
        let rec = StudyRecord {
            id: g.studies.len() as u64,
            name: name.into(),
            direction,
        };
        g.studies.push(rec.clone());
        g.by_study.insert(rec.id, StudyTrials::default());
        Ok(rec)
    }

    fn find_study(&self, name: &str) -> Result<Option<StudyRecord>> {
        Ok(self.lock().studies.iter().find(|s| s.name == name).cloned())
    }

    fn studies(&self) -> Result<Vec<StudyRecord>> {
        Ok(self.lock().studies.clone())
    }

    fn enqueue_trial_with(
        &self,
        study: u64,
        params: &BTreeMap<String, ParamValue>,
        system_attrs: &BTreeMap<String, serde_json::Value>,
    ) -> Result<u64> {
        let mut g = self.lock();
        let id = g.push_waiting(study, |id, number| {
            let mut t = FrozenTrial::new(id, number, TrialState::Waiting);
            t.fixed = params.clone();
            t.system_attrs = system_attrs.clone();
            t
        })?;
        Ok(g.trials[id as usize].number)
    }

    fn start_trial(
        &self,
        study: u64,
        limit: Option<u64>,
        owner: &str,
        heartbeat: bool,
    ) -> Result<Option<FrozenTrial>> {
        let mut g = self.lock();
        let s = g.study(study)?;
        let started = s.ids.len() as u64 - s.waiting.len() as u64 - s.started_retries;
        let id = if let Some(&id) = s.waiting_retries.first() {
            s.started_retries += 1;
            id
        } else if limit.is_some_and(|l| started >= l) {
            return Ok(None);
        } else if let Some(&id) = s.waiting.first() {
            id
        } else {
            g.push_waiting(study, |id, number| {
                FrozenTrial::new(id, number, TrialState::Waiting)
            })?
        };
        let s = g.study(study)?;
        s.waiting.remove(&id);
        s.waiting_retries.remove(&id);
        s.running.insert(id);
        s.dirty.insert(id);
        if heartbeat {
            g.heartbeats.insert(id, Instant::now());
        }
        let t = Arc::make_mut(&mut g.trials[id as usize]);
        t.state = TrialState::Running;
        t.started = Some(now());
        t.owner = Some(owner.to_string());
        Ok(Some(t.clone()))
    }

    fn heartbeat(&self, trial: u64) -> Result<()> {
        let mut g = self.lock();
        g.running(trial)?;
        g.heartbeats.insert(trial, Instant::now());
        Ok(())
    }

    fn stale_trials(&self, study: u64, grace: Duration) -> Result<Vec<u64>> {
        let mut g = self.lock();
        let running = g.study(study)?.running.clone();
        Ok(running
            .into_iter()
            .filter(|i| g.heartbeats.get(i).is_some_and(|h| h.elapsed() > grace))
            .collect())
    }

    fn set_param(&self, trial: u64, name: &str, param: &Param) -> Result<()> {
        self.lock()
            .running(trial)?
            .params
            .insert(name.into(), param.clone());
        Ok(())
    }

    fn report(&self, trial: u64, step: u64, value: f64) -> Result<()> {
        self.lock().running(trial)?.intermediate.insert(step, value);
        Ok(())
    }

    fn set_user_attr(&self, trial: u64, key: &str, value: &serde_json::Value) -> Result<()> {
        self.lock()
            .running(trial)?
            .user_attrs
            .insert(key.into(), value.clone());
        Ok(())
    }

    fn finish_trial(
        &self,
        trial: u64,
        state: TrialState,
        value: Option<f64>,
        message: Option<&str>,
    ) -> Result<()> {
        let mut g = self.lock();
        let t = g.running(trial)?;
        debug_assert!(state.is_finished());
        t.state = state;
        t.value = value;
        t.message = message.map(Into::into);
        t.finished = Some(now());
        let study = g.study_of[trial as usize];
        g.study(study)?.running.remove(&trial);
        g.heartbeats.remove(&trial);
        Ok(())
    }

    fn trial(&self, trial: u64) -> Result<Arc<FrozenTrial>> {
        self.lock()
            .trials
            .get(trial as usize)
            .cloned()
            .ok_or_else(|| TuneError::InvalidValue(format!("no trial with id {trial}")))
    }

    fn trials(&self, study: u64) -> Result<Trials> {
        let g = &mut *self.lock();
        let s = g
            .by_study
            .get_mut(&study)
            .ok_or_else(|| TuneError::InvalidValue(format!("no study with id {study}")))?;
        if !s.dirty.is_empty() {
            let snapshot = Arc::make_mut(&mut s.snapshot);
            // Ids grow with numbers, so new trials come last and in order.
            for id in std::mem::take(&mut s.dirty) {
                let t = Arc::clone(&g.trials[id as usize]);
                match snapshot.get_mut(t.number as usize) {
                    Some(slot) => *slot = t,
                    None => snapshot.push(t),
                }
            }
        }
        Ok(Arc::clone(&s.snapshot))
    }
}
