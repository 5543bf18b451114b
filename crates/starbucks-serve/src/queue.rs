//! The queue between the HTTP handlers and the encoder thread, and the rule that cuts batches
//! from it.
//!
//! One job per text. A batch is the oldest jobs, in arrival order, while the batch's padded
//! cost (jobs × longest job, in tokens, as TEI counts it) stays within the budget; the first
//! job always fits. Depths are mixed: the encoder answers each job when its own layer is done
//! (`starbucks_model::embedder::Pass`), and with [`Schedule::Join`] the jobs that arrive early in
//! a batch start at once and join it between layers, so a 1-layer job seldom waits for a 6-layer
//! job.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use starbucks_model::{Size, tokenizer::Tokens};
use tokio::sync::oneshot;

/// One text to embed at one size, and where its answer goes.
#[derive(Debug)]
pub struct Job {
    pub tokens: Tokens,
    pub size: Size,
    pub output: Output,
    pub reply: oneshot::Sender<Answer>,
}

/// What a job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The sentence vector (pooled, through the Dense module).
    Sentence,
    /// Every token's hidden state at the job's layer (TEI's `embed_all`).
    Tokens,
}

/// A job's vectors, cut to its dims and not normalised: one for [`Output::Sentence`], one per
/// token for [`Output::Tokens`]; and when its batch started, for the timing headers.
#[derive(Debug)]
pub struct Answer {
    pub vectors: Vec<Vec<f32>>,
    pub started: Instant,
}

#[derive(Debug, Default)]
struct State {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// A FIFO of jobs that the handlers push to and the encoder thread takes batches from.
#[derive(Debug, Default)]
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
}

/// The queue no longer takes jobs: the server is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left the deque whole (every update
        // is one push or pop), so its jobs can still be served.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds all of one request's jobs at once, so that they are batched together.
    pub fn push(&self, jobs: Vec<Job>) -> Result<(), Closed> {
        let mut state = self.lock();
        if state.closed {
            return Err(Closed);
        }
        state.jobs.extend(jobs);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Jobs waiting.
    pub fn depth(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Takes no more jobs; the encoder still takes the waiting ones.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Takes the jobs that can join a running batch of `running` (rows, longest text) without
    /// its padded cost passing `max_batch_tokens`; never waits, and takes nothing when the
    /// oldest job does not fit.
    pub fn try_batch(&self, max_batch_tokens: usize, schedule: Schedule, running: (usize, usize)) -> Option<Vec<Job>> {
        let mut state = self.lock();
        state.jobs.retain(|job| !job.reply.is_closed());
        let batch = take_batch(&mut state.jobs, max_batch_tokens, schedule, running);
        (!batch.is_empty()).then_some(batch)
    }

    /// Waits for jobs and takes the next batch under `max_batch_tokens`; `None` once the
    /// queue is closed and empty. Jobs whose client has gone are dropped unseen.
    pub fn next_batch(&self, max_batch_tokens: usize, schedule: Schedule) -> Option<Vec<Job>> {
        let mut state = self.lock();
        loop {
            state.jobs.retain(|job| !job.reply.is_closed());
            if !state.jobs.is_empty() {
                return Some(take_batch(&mut state.jobs, max_batch_tokens, schedule, (0, 0)));
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// How batches are cut from the queue (`--schedule join|mixed|by-depth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Schedule {
    /// The oldest jobs whatever their depth, each answered when its own layer is done; jobs
    /// that arrive during the first third of a batch's layers start a batch of their own,
    /// which catches up layer by layer and then joins the running one.
    #[default]
    Join,
    /// As `Join`, but a running batch takes no one in: new jobs wait for it to finish.
    Mixed,
    /// The oldest job's depth only, as if each depth had its own queue served oldest first.
    ByDepth,
}

impl Schedule {
    /// Whether the jobs waiting may start a pass of their own, catch up with a running pass
    /// that has run `layer` of the model's `depth` layers, and join it: under [`Schedule::Join`],
    /// in the first third of its layers only. Catching up runs `layer` steps over the newcomers
    /// alone, and a step of a few texts costs nearly what a full batch's does (the layer's
    /// weights are streamed whatever the rows), while joining saves only the steps the two
    /// passes then share; later newcomers gather in the queue and start the next pass together,
    /// as under [`Schedule::Mixed`]. Measured in `docs/serving.md` ("Joining early only").
    pub fn joins_at(self, layer: usize, depth: usize) -> bool {
        self == Schedule::Join && layer > 0 && layer * 3 <= depth
    }
}

/// The oldest jobs (of the oldest job's depth, with [`Schedule::ByDepth`]) that, beside the
/// `running` batch (rows, longest text; `(0, 0)` for none), keep `(rows + count) × longest ≤
/// max_batch_tokens`. Without a running batch the first job always goes, alone if need be.
fn take_batch(
    jobs: &mut VecDeque<Job>,
    max_batch_tokens: usize,
    schedule: Schedule,
    running: (usize, usize),
) -> Vec<Job> {
    let depth = jobs.front().map_or(0, |j| j.size.layers);
    let (rows, mut longest) = running;
    let mut picked = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if schedule == Schedule::ByDepth && job.size.layers != depth {
            continue;
        }
        let next_longest = longest.max(job.tokens.len());
        let alone = rows == 0 && picked.is_empty();
        if !alone && (rows + picked.len() + 1) * next_longest > max_batch_tokens {
            break;
        }
        longest = next_longest;
        picked.push(i);
    }
    if picked.len() == picked.last().map_or(0, |&i| i + 1) {
        return jobs.drain(..picked.len()).collect();
    }
    let mut batch = Vec::with_capacity(picked.len());
    for (taken, &i) in picked.iter().enumerate() {
        batch.extend(jobs.remove(i - taken));
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(len: usize) -> (Job, oneshot::Receiver<Answer>) {
        let (reply, rx) = oneshot::channel();
        let tokens = Tokens { ids: vec![1; len], type_ids: vec![0; len], truncated: false };
        (Job { tokens, size: Size::new(1, 8), output: Output::Sentence, reply }, rx)
    }

    #[test]
    fn batches_keep_arrival_order_within_the_padded_budget() {
        let queue = Queue::default();
        let (jobs, _receivers): (Vec<_>, Vec<_>) = [10, 10, 30, 5, 50, 5].into_iter().map(job).unzip();
        queue.push(jobs).unwrap();
        let lengths = |batch: Vec<Job>| batch.iter().map(|j| j.tokens.len()).collect::<Vec<_>>();
        // 10,10 → 20; +30 → 3×30 = 90; +5 → 4×30 = 120 > 100.
        assert_eq!(lengths(queue.next_batch(100, Schedule::Mixed).unwrap()), [10, 10, 30]);
        // A job longer than the budget still goes, alone.
        assert_eq!(lengths(queue.next_batch(40, Schedule::Mixed).unwrap()), [5]);
        assert_eq!(lengths(queue.next_batch(40, Schedule::Mixed).unwrap()), [50]);
        assert_eq!(queue.depth(), 1);
        // Beside a running batch of one 4-token text: 2 × 5 = 10 tokens.
        assert!(queue.try_batch(9, Schedule::Mixed, (1, 4)).is_none(), "the oldest job does not fit");
        assert_eq!(queue.depth(), 1);
        queue.close();
        assert!(queue.push(vec![job(3).0]).is_err(), "a closed queue takes no jobs");
        assert_eq!(lengths(queue.next_batch(40, Schedule::Mixed).unwrap()), [5], "waiting jobs are still served");
        assert!(queue.next_batch(40, Schedule::Mixed).is_none());
    }

    #[test]
    fn by_depth_takes_the_oldest_jobs_depth_only() {
        let queue = Queue::default();
        let mut receivers = Vec::new();
        let jobs = [(3, 1), (3, 6), (4, 1), (5, 6), (6, 1)]
            .into_iter()
            .map(|(len, layers)| {
                let (mut j, rx) = job(len);
                j.size = Size::new(layers, 8);
                receivers.push(rx);
                j
            })
            .collect();
        queue.push(jobs).unwrap();
        let shape = |batch: Vec<Job>| batch.iter().map(|j| (j.tokens.len(), j.size.layers)).collect::<Vec<_>>();
        assert_eq!(shape(queue.next_batch(100, Schedule::ByDepth).unwrap()), [(3, 1), (4, 1), (6, 1)]);
        assert_eq!(shape(queue.next_batch(100, Schedule::ByDepth).unwrap()), [(3, 6), (5, 6)]);
    }

    #[test]
    fn joining_jobs_count_the_running_batch_in_the_budget() {
        let queue = Queue::default();
        let (jobs, _receivers): (Vec<_>, Vec<_>) = [4, 12, 4].into_iter().map(job).unzip();
        queue.push(jobs).unwrap();
        // Running: 3 rows of at most 8 tokens. 4 more → 4 × 8 = 32; 12 more → 5 × 12 = 60 > 40.
        let batch = queue.try_batch(40, Schedule::Join, (3, 8)).unwrap();
        assert_eq!(batch.iter().map(|j| j.tokens.len()).collect::<Vec<_>>(), [4]);
        assert!(queue.try_batch(40, Schedule::Join, (3, 8)).is_none(), "the 12-token job: 4 × 12 = 48 > 40");
    }

    #[test]
    fn newcomers_join_in_the_first_third_of_the_layers_only() {
        let layers = |schedule: Schedule, depth| {
            (0..=depth).filter(|&layer| schedule.joins_at(layer, depth)).collect::<Vec<_>>()
        };
        assert_eq!(layers(Schedule::Join, 6), [1, 2]);
        assert_eq!(layers(Schedule::Join, 12), [1, 2, 3, 4]);
        // A model of one or two layers has no pass to join: every pass ends before anyone could.
        assert!(layers(Schedule::Join, 2).is_empty());
        assert_eq!(layers(Schedule::Join, 3), [1]);
        assert!(layers(Schedule::Mixed, 6).is_empty() && layers(Schedule::ByDepth, 6).is_empty());
    }

    #[test]
    fn jobs_of_departed_clients_are_skipped() {
        let queue = Queue::default();
        let (gone, rx) = job(4);
        drop(rx);
        let (kept, _rx) = job(6);
        queue.push(vec![gone, kept]).unwrap();
        assert_eq!(queue.next_batch(100, Schedule::Mixed).unwrap().len(), 1);
    }
}
