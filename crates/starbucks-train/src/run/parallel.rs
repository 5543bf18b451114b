//! Data parallelism: one engine per device, rank 0 leading in this thread and every other rank
//! following in its own, in lockstep through burn's collective all-reduce.

use std::path::PathBuf;
use std::sync::Mutex;

use burn::collective::{self, CollectiveConfig, PeerId};
use burn::module::AutodiffModule;
use burn::optim::AdamW;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::tensor::backend::AutodiffBackend;
use starbucks_model::bert::settle;

use super::RunOptions;
use super::setup::Common;
use crate::checkpoint::{self, TrainState};
use crate::engine::{Engine, Peer, Task};
use crate::error::{Error, Result};
use crate::optim::{LrSchedule, adamw};

/// One engine per device, each with the model (a replica on its device), a fresh optimiser, and,
/// when resuming, the newest valid checkpoint: chosen once by rank 0, loaded by every replica.
pub(super) fn engines<B: AutodiffBackend, M: AutodiffModule<B>>(
    c: &Common,
    options: &RunOptions,
    model: M,
    schedule: LrSchedule,
    fresh: TrainState,
    devices: &[B::Device],
) -> Result<Vec<Engine<B, M>>> {
    let t = &c.config.train;
    let checkpoints = c.output.join("checkpoints");
    settle(&model);
    let world = devices.len();
    let mut chosen: Option<(PathBuf, TrainState)> = None;
    devices
        .iter()
        .enumerate()
        .map(|(rank, device)| {
            let replica = if rank == 0 { model.clone() } else { model.clone().fork(device) };
            let optimizer: OptimizerAdaptor<AdamW, M, B> = adamw(t.weight_decay as f32).init();
            let (replica, optimizer) = match (&chosen, options.resume) {
                (Some((dir, _)), _) => checkpoint::load(dir, replica, optimizer, device)?,
                (None, true) if rank == 0 => {
                    let (replica, optimizer, found) = checkpoint::load_newest(&checkpoints, replica, optimizer, device);
                    chosen = found;
                    (replica, optimizer)
                }
                _ => (replica, optimizer),
            };
            let state = chosen.as_ref().map_or_else(|| fresh.clone(), |(_, state)| state.clone());
            let mut engine = Engine::new(replica, optimizer, schedule, state, device.clone());
            engine.max_grad_norm = t.max_grad_norm;
            engine.grad_accum = t.grad_accum;
            engine.max_bad_steps = t.max_bad_steps;
            engine.peer = (world > 1).then_some(Peer { rank, world });
            engine.stop = options.stop.clone();
            Ok(engine)
        })
        .collect()
}

/// Registers `engine`'s peer with burn's collective (a no-op on a single device).
pub(super) fn register<B: AutodiffBackend, M: AutodiffModule<B>>(
    engine: &Engine<B, M>,
    device: &B::Device,
) -> Result<()> {
    let Some(peer) = engine.peer else { return Ok(()) };
    let config = CollectiveConfig::default().with_num_devices(peer.world);
    collective::register::<B::InnerBackend>(PeerId::from(peer.rank as u32), device.clone(), config)
        .map_err(|e| Error::Parallel(format!("registering peer {}: {e:?}", peer.rank)))
}

/// A peer other than rank 0: steps in lockstep (the all-reduce inside each step is the
/// barrier); rank 0 logs, checkpoints and evaluates for all.
fn follow<B: AutodiffBackend, T: Task<B>>(
    mut engine: Engine<B, T::Model>,
    task: &T,
    data: &Mutex<T::Data>,
    total_steps: usize,
    device: &B::Device,
) -> Result<()> {
    register(&engine, device)?;
    while engine.state.step < total_steps {
        if engine.step(task, data)?.stop {
            break;
        }
    }
    Ok(())
}

/// Runs `lead` here and every engine of `followers` (ranks 1…, on `devices[1..]`) in a thread of
/// its own. A peer that fails resets the collective, so the others wake from their all-reduce
/// and fail too; the first error that is not such a wake-up is the run's.
pub(super) fn in_lockstep<B: AutodiffBackend, T: Task<B>, R>(
    followers: Vec<Engine<B, T::Model>>,
    task: &T,
    data: &Mutex<T::Data>,
    total_steps: usize,
    devices: &[B::Device],
    lead: impl FnOnce() -> Result<R>,
) -> Result<R> {
    collective::reset_collective::<B::InnerBackend>();
    std::thread::scope(|scope| {
        let followers: Vec<_> = followers
            .into_iter()
            .zip(&devices[1..])
            .map(|(engine, device)| {
                scope.spawn(move || {
                    let result = follow(engine, task, data, total_steps, device);
                    if result.is_err() {
                        collective::reset_collective::<B::InnerBackend>();
                    }
                    result
                })
            })
            .collect();
        let led = lead();
        if led.is_err() {
            collective::reset_collective::<B::InnerBackend>();
        }
        let mut first_error = None;
        for follower in followers {
            match follower.join() {
                Ok(Err(e)) if !matches!(e, Error::Parallel(_)) => {
                    first_error.get_or_insert(e);
                }
                Ok(_) => {}
                Err(_) => {
                    first_error.get_or_insert(Error::Parallel("a peer panicked".into()));
                }
            }
        }
        match (led, first_error) {
            (Ok(summary), None) => Ok(summary),
            (Err(e), _) if !matches!(e, Error::Parallel(_)) => Err(e),
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(e),
        }
    })
}
