//! Loading many keys: the tiers answer what they hold, other callers'
//! flights are joined, and the rest go to one call of the batch loader.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::flight::{Flight, soft_timed};
use super::{Job, Leased, ManyFetcher, Outcome, Probe, Stale};
use crate::cache::Engine;
use crate::entry::{GetOptions, Lookup};
use crate::error::{Error, ErrorKind, Result};
use crate::key;
use crate::runtime;
use crate::source::{FetchManyFuture, Fetched};

impl Engine {
    /// Read-through of many keys: found ones from the tiers, the rest
    /// through one call of the batch loader (keys another caller is
    /// already loading are waited for instead). `None`: not found.
    pub(crate) async fn load_many(
        self: &Arc<Self>,
        keys: &[&str],
        fetcher: ManyFetcher,
        options: &GetOptions,
    ) -> Result<Vec<Option<Lookup>>> {
        let plan = self.plan_many(keys, fetcher, options)?;
        let mut out = plan.done;
        for (i, flight, stale) in plan.waiting {
            let waited = flight.wait(stale.is_some()).await;
            out[i] = self.finish_load(waited, stale)?;
        }
        Ok(out)
    }

    /// [`Engine::load_many`], blocking.
    pub(crate) fn load_many_blocking(
        self: &Arc<Self>,
        keys: &[&str],
        fetcher: ManyFetcher,
        options: &GetOptions,
    ) -> Result<Vec<Option<Lookup>>> {
        let plan = self.plan_many(keys, fetcher, options)?;
        let mut out = plan.done;
        for (i, flight, stale) in plan.waiting {
            let waited = flight.wait_blocking(stale.is_some());
            out[i] = self.finish_load(waited, stale)?;
        }
        Ok(out)
    }

    fn plan_many(
        self: &Arc<Self>,
        keys: &[&str],
        fetcher: ManyFetcher,
        options: &GetOptions,
    ) -> Result<Plan> {
        self.check_open()?;
        for key in keys {
            key::validate(key)?;
        }
        if let ManyFetcher::Configured = fetcher
            && !self.loads.has_source()
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "no source is configured to load from",
            ));
        }
        let now = self.clock.now_ms();
        let mut done = vec![None; keys.len()];
        let mut waiting = Vec::new();
        let mut led: Vec<(Arc<Flight>, Job)> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, &key) in keys.iter().enumerate() {
            if let Some(&first) = seen.get(key) {
                // The same key twice: answered as the first.
                waiting.push((i, Repeat::Of(first)));
                continue;
            }
            seen.insert(key, i);
            let stale = match self.probe(key, now)? {
                Probe::Fresh(lookup, _) => {
                    done[i] = Some(lookup);
                    continue;
                }
                Probe::Stale(found, tier) => Some(Stale { found, tier }),
                Probe::Miss => None,
            };
            if let ManyFetcher::Configured = fetcher
                && !self.loads.serves(key)?
            {
                // Not the source's: a plain miss.
                continue;
            }
            if stale.is_none() && self.loads.negative_until(key, now).is_some() {
                self.counters.source.negative_hits.incr();
                continue;
            }
            let (flight, lead) = self.loads.join(key);
            if lead {
                led.push((
                    flight.clone(),
                    Job {
                        key: key.to_owned(),
                        options: options.clone(),
                        stale: stale.as_ref().map(|s| s.found.clone()),
                        refresh_of_ms: None,
                    },
                ));
            } else {
                self.counters.source.coalesced.incr();
            }
            waiting.push((i, Repeat::Flight(flight, stale)));
        }
        if !led.is_empty() {
            self.fly_many(led, fetcher);
        }
        let mut flights = Vec::with_capacity(waiting.len());
        for (i, wait) in waiting {
            match wait {
                Repeat::Flight(flight, stale) => flights.push((i, flight, stale)),
                Repeat::Of(first) => {
                    if let Some((_, flight, stale)) = flights.iter().find(|(j, _, _)| *j == first) {
                        let (flight, stale) = (Arc::clone(flight), stale.clone());
                        flights.push((i, flight, stale));
                    } else {
                        done[i] = done[first].clone();
                    }
                }
            }
        }
        Ok(Plan {
            done,
            waiting: flights,
        })
    }

    /// Runs the flights of a batch: each takes its lease; the keys leased
    /// go to the loader in one call.
    fn fly_many(self: &Arc<Self>, led: Vec<(Arc<Flight>, Job)>, fetcher: ManyFetcher) {
        let engine = self.clone();
        runtime::handle().spawn(async move {
            let soft = engine.config.fail_safe.soft_timeout;
            let outcomes = soft_timed(soft, engine.run_many(&led, fetcher), || {
                led.iter().for_each(|(f, _)| f.pass_soft_timeout());
            })
            .await;
            // Every key's flight ends before any lands: a caller woken by
            // one key must not join another key's finished flight.
            for (flight, job) in &led {
                engine.loads.end(&job.key, flight);
            }
            for ((flight, _), outcome) in led.iter().zip(outcomes) {
                flight.land(outcome);
            }
        });
    }

    async fn run_many(
        self: &Arc<Self>,
        led: &[(Arc<Flight>, Job)],
        fetcher: ManyFetcher,
    ) -> Vec<Outcome> {
        let started = Instant::now();
        let hard = self.config.fail_safe.hard_timeout;
        let holder = crate::coherence::new_origin();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; led.len()];
        let mut leased = vec![false; led.len()];
        if self.sqlite.is_some() {
            // Leases one by one: a key another process loads is waited for
            // before the batch goes out; the batch takes the rest.
            for (i, (_, job)) in led.iter().enumerate() {
                match self.take_lease(job, holder, started).await {
                    Ok(Leased::Held) => leased[i] = true,
                    Ok(Leased::Answered(outcome)) => outcomes[i] = Some(outcome),
                    Ok(Leased::Unavailable) => {}
                    Err(err) => outcomes[i] = Some(Err(err)),
                }
            }
        }
        let wanted: Vec<usize> = (0..led.len()).filter(|&i| outcomes[i].is_none()).collect();
        if !wanted.is_empty() {
            let keys: Vec<String> = wanted.iter().map(|&i| led[i].1.key.clone()).collect();
            let answers = self.fetch_many(keys, fetcher, Instant::now(), hard).await;
            for &i in &wanted {
                let job = &led[i].1;
                let outcome = match &answers {
                    Err(err) => Err(err.clone()),
                    Ok(answers) => {
                        let fetched = answers.get(&job.key).cloned().unwrap_or(Fetched::NotFound);
                        self.store(job, fetched).await
                    }
                };
                outcomes[i] = Some(outcome);
            }
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(Error::new(
                        ErrorKind::Internal,
                        "a batched load left a key unanswered",
                    ))
                })
            })
            .collect();
        for (((_, job), outcome), leased) in led.iter().zip(&outcomes).zip(leased) {
            if leased {
                self.end_lease(job, holder, outcome).await;
            }
        }
        outcomes
    }

    /// One batched source call, through the breaker and within the hard timeout.
    async fn fetch_many(
        self: &Arc<Self>,
        keys: Vec<String>,
        fetcher: ManyFetcher,
        started: Instant,
        hard: Duration,
    ) -> Result<HashMap<String, Fetched>> {
        let count = keys.len();
        let what = || format!("a batched load of {count} keys");
        // The configured source's limits are shared with other processes.
        let trips = match fetcher {
            ManyFetcher::Configured => Some(self.follow_shared_limit().await),
            ManyFetcher::Once(_) => None,
        };
        let permit = self.admit(count, what)?;
        let fetch: FetchManyFuture = match fetcher {
            ManyFetcher::Once(loader) => loader(keys),
            ManyFetcher::Configured => {
                let source = self.loads.source.clone().expect("checked when planned");
                match source.fetch_many(&keys) {
                    Some(batch) => batch,
                    None => Box::pin(async move {
                        // No batch call: one fetch per key, all at once.
                        let tasks: Vec<_> = keys
                            .into_iter()
                            .map(|key| {
                                let fetch = source.fetch(&key, None);
                                (key, runtime::handle().spawn(fetch))
                            })
                            .collect();
                        let mut answers = HashMap::with_capacity(tasks.len());
                        for (key, task) in tasks {
                            let fetched = task.await.map_err(|e| {
                                Error::new(
                                    ErrorKind::Source,
                                    format!("a fetch did not finish: {e}"),
                                )
                            })??;
                            answers.insert(key, fetched);
                        }
                        Ok(answers)
                    }),
                }
            }
        };
        let answered = self.call_source(permit, fetch, started, hard, what).await;
        if let Some(trips) = trips {
            self.share_limit(trips).await;
        }
        answered
    }
}

enum Repeat {
    Flight(Arc<Flight>, Option<Stale>),
    Of(usize),
}

struct Plan {
    done: Vec<Option<Lookup>>,
    waiting: Vec<(usize, Arc<Flight>, Option<Stale>)>,
}
