//! Studies in memory: fast, shared by threads, gone when the process ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Storage, StudyRecord};
use crate::distribution::ParamValue;
use crate::error::{Result, TuneError};
use crate::trial::{now, Direction, FrozenTrial, Param, TrialState};

/// A storage in this process's memory.
#[derive(Default)]
pub struct InMemoryStorage {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    studies: Vec<StudyRecord>,
    /// Trials by id (ids are indices); `Arc`s so that a snapshot of 1000 trials is cheap.
    trials: Vec<Arc<FrozenTrial>>,
    /// Trial ids of each study, by number.
    by_study: BTreeMap<u64, Vec<u64>>,
    /// The last heartbeat of each trial that records them.
    heartbeats: HashMap<u64, Instant>,
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
        Ok(Arc::make_mut(t))
    }

    fn study(&mut self, study: u64) -> Result<&mut Vec<u64>> {
        self.by_study
            .get_mut(&study)
            .ok_or_else(|| TuneError::InvalidValue(format!("no study with id {study}")))
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
        g.by_study.insert(rec.id, Vec::new());
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
        let id = g.trials.len() as u64;
        let ids = g.study(study)?;
        let number = ids.len() as u64;
        ids.push(id);
        let mut t = FrozenTrial::new(id, number, TrialState::Waiting);
        t.fixed = params.clone();
        t.system_attrs = system_attrs.clone();
        g.trials.push(Arc::new(t));
        Ok(number)
    }

    fn start_trial(
        &self,
        study: u64,
        limit: Option<u64>,
        owner: &str,
        heartbeat: bool,
    ) -> Result<Option<FrozenTrial>> {
        let mut g = self.lock();
        let ids = g.study(study)?.clone();
        let trials = ids.iter().map(|&i| &g.trials[i as usize]);
        let waiting_retry = trials
            .clone()
            .find(|t| t.state == TrialState::Waiting && t.retried_trial().is_some())
            .map(|t| t.id);
        let started = trials
            .clone()
            .filter(|t| t.state != TrialState::Waiting && t.retried_trial().is_none())
            .count() as u64;
        let id = if let Some(id) = waiting_retry {
            id
        } else if limit.is_some_and(|l| started >= l) {
            return Ok(None);
        } else if let Some(t) = trials.clone().find(|t| t.state == TrialState::Waiting) {
            t.id
        } else {
            let id = g.trials.len() as u64;
            g.trials.push(Arc::new(FrozenTrial::new(
                id,
                ids.len() as u64,
                TrialState::Waiting,
            )));
            g.study(study)?.push(id);
            id
        };
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
        let ids = g.study(study)?.clone();
        Ok(ids
            .into_iter()
            .filter(|i| g.trials[*i as usize].state == TrialState::Running)
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
        t.state = state;
        t.value = value;
        t.message = message.map(Into::into);
        t.finished = Some(now());
        Ok(())
    }

    fn trial(&self, trial: u64) -> Result<Arc<FrozenTrial>> {
        self.lock()
            .trials
            .get(trial as usize)
            .cloned()
            .ok_or_else(|| TuneError::InvalidValue(format!("no trial with id {trial}")))
    }

    fn trials(&self, study: u64) -> Result<Vec<Arc<FrozenTrial>>> {
        let mut g = self.lock();
        let ids = g.study(study)?.clone();
        Ok(ids.iter().map(|&i| g.trials[i as usize].clone()).collect())
    }
}
