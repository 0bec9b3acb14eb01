//! Gradient and parameter sharding across data-parallel ranks (`train.sharding = "gradients"`,
//! ZeRO-2, and `"full"`, ZeRO-3 / FSDP: Rajbhandari et al. 2020; docs/distributed.md).
//!
//! Every parameter is cut into the slices of [`ShardSpec`]; rank `r` owns slice `r` of each.
//! The update runs layer by layer ([`rlvr_core::ShardHooks`]): after a part's backward its
//! gradients are reduce-scattered into the owners' f32 slices and freed, so no rank holds the
//! whole gradient. With `full` the parameters themselves live as the owners' f32 master slices:
//! a part is all-gathered just before its forward and again before its recomputation in
//! backward, and freed right after. Checkpoints, weight syncs and checksums see the exact
//! whole model ([`ParamShards::whole`]); rollouts, log-probabilities and evaluation its compute
//! copy ([`ParamShards::whole_for_compute`]); the update releases either. With bf16 mixed
//! precision the parameters the model reads only through a cast to bf16
//! ([`rlvr_core::Policy::compute_copies`]) are gathered as bf16 for computing: half the
//! traffic and memory of f32, and exactly what the cast of the f32 parameter computes.

use crate::buckets::{add_reduced, pack_grads, pack_slices, plan_buckets, unpack_gathered, Bucket};
use crate::error::{Result, TrainError};
use crate::optim::{all_finite, named_vars, AdamW, StepOutcome};
use crate::sharding::{gather_into, gather_to_main, gather_whole, ShardSpec, Sharding, PIECE};
use crate::spool::Spool;
use rlvr_core::{CoreError, ParamPart, ShardHooks};
use rlvr_dist::{Collective, Pending};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Elements of one reduce-scatter buffer (all ranks' pieces together: 64 MiB of f32).
const REDUCE_PIECE: i64 = 16 << 20;

/// All-gathers of one part's bucket, started ahead of its use (a prefetch).
type Started<'a> = Vec<Box<dyn Pending + 'a>>;

/// This rank's share of the model state under `gradients` or `full` sharding.
pub struct ParamShards {
    spec: ShardSpec,
    level: Sharding,
    /// The trainable parameters, in store order (the optimizer's order), and their names.
    vars: Vec<Tensor>,
    names: Vec<String>,
    shapes: Vec<Vec<i64>>,
    parts: Vec<ParamPart>,
    /// `full`: this rank's f32 master slice of each parameter (flat).
    masters: Vec<Tensor>,
    /// This rank's slice of each parameter's gradient summed over the ranks and the
    /// mini-batch's micro-batches (flat f32); allocated for a mini-batch, freed after its
    /// optimizer step (rollouts do not hold them).
    grads: std::cell::RefCell<Vec<Tensor>>,
    /// Each slice's length.
    lens: Vec<i64>,
    /// The kind each parameter's compute copy is gathered in (its own kind, or bf16 under
    /// mixed precision).
    compute_kinds: Vec<Kind>,
    /// How many parameters have a compute copy in another kind, and their elements.
    copies: (usize, i64),
    /// What the parameters hold between updates (always [`Held::Exact`] under `gradients`).
    held: Cell<Held>,
    /// Whether this rank (0) holds them whole for a checkpoint ([`ParamShards::whole_on_main`]).
    main_whole: Cell<bool>,
    /// `full`: each part's parameters in the buckets of its all-gathers, in compute kinds (at
    /// most [`PIECE`] elements per rank each: a decoder layer of Qwen2.5-0.5B is one).
    gather_buckets: HashMap<ParamPart, Vec<Bucket>>,
    /// Each part's gradients in the buckets of its reduce-scatters (at most [`REDUCE_PIECE`]
    /// elements over all ranks each).
    reduce_buckets: HashMap<ParamPart, Vec<Bucket>>,
}

/// What a `full` rank's parameters hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Empty: the model lives in the master slices (during updates).
    Released,
    /// The whole model, exactly (f32 where the masters are).
    Exact,
    /// The whole model as compute copies (bf16 where mixed precision casts anyway): for
    /// rollouts and statistics only, never written back to the masters nor saved.
    Compute,
}

fn empty(like: &Tensor) -> Tensor {
    Tensor::zeros([0], (like.kind(), like.device()))
}

fn collective(e: impl std::fmt::Display) -> CoreError {
    CoreError::Collective(e.to_string())
}

impl ParamShards {
    /// The shards of the trainable parameters of `vs` (whole at this point; under `full` they
    /// are freed by the first [`ParamShards::release`]). `None` below `gradients`. `compute`:
    /// the parameters gathered for computing in another kind, and that kind
    /// ([`rlvr_core::Policy::compute_copies`]).
    pub fn new(
        vs: &VarStore,
        spec: ShardSpec,
        level: Sharding,
        compute: Option<(Kind, Vec<String>)>,
    ) -> Option<ParamShards> {
        if !matches!(level, Sharding::Gradients | Sharding::Full) {
            return None;
        }
        // Every gradient defined (the hooks set their data) but empty until its part's
        // backward: defined one parameter at a time, never the whole gradient at once.
        let vars: Vec<(String, Tensor)> = named_vars(vs);
        for (_, v) in &vars {
            if !v.grad().defined() {
                (v.sum(Kind::Float) * 0.0).backward();
            }
            let _guard = tch::no_grad_guard();
            let g = v.grad();
            g.shallow_clone().set_data(&empty(&g));
        }
        let _guard = tch::no_grad_guard();
        let masters = match level {
            Sharding::Full => vars
                .iter()
                .map(|(_, v)| spec.slice(v).to_kind(Kind::Float).copy())
                .collect(),
            _ => Vec::new(),
        };
        let compute_kinds: Vec<Kind> = vars
            .iter()
            .map(|(n, v)| match &compute {
                Some((kind, names)) if level == Sharding::Full && names.contains(n) => *kind,
                _ => v.kind(),
            })
            .collect();
        let copies = vars
            .iter()
            .zip(&compute_kinds)
            .filter(|((_, v), &k)| v.kind() != k)
            .fold((0, 0), |(n, e), ((_, v), _)| (n + 1, e + v.numel() as i64));
        let parts: Vec<ParamPart> = vars.iter().map(|(n, _)| ParamPart::of_name(n)).collect();
        let buckets = |kind_of: &dyn Fn(usize) -> Kind, cap: i64| {
            let mut out: HashMap<ParamPart, Vec<Bucket>> = HashMap::new();
            for &part in &parts {
                if out.contains_key(&part) {
                    continue;
                }
                let of_part: Vec<(usize, i64, Kind)> = (0..vars.len())
                    .filter(|&i| parts[i] == part)
                    .map(|i| (i, vars[i].1.numel() as i64, kind_of(i)))
                    .collect();
                out.insert(part, plan_buckets(&of_part, spec, cap));
            }
            out
        };
        let gather_buckets = buckets(&|i| compute_kinds[i], PIECE);
        let reduce_buckets = buckets(&|_| Kind::Float, REDUCE_PIECE / spec.world.max(1) as i64);
        Some(ParamShards {
            gather_buckets,
            reduce_buckets,
            spec,
            level,
            compute_kinds,
            copies,
            shapes: vars.iter().map(|(_, v)| v.size()).collect(),
            parts,
            grads: std::cell::RefCell::new(Vec::new()),
            lens: vars
                .iter()
                .map(|(_, v)| spec.range(v.numel() as i64).1)
                .collect(),
            names: vars.iter().map(|(n, _)| n.clone()).collect(),
            vars: vars.into_iter().map(|(_, v)| v).collect(),
            masters,
            held: Cell::new(Held::Exact),
            main_whole: Cell::new(false),
        })
    }

    /// The sharding level.
    pub fn level(&self) -> Sharding {
        self.level
    }

    fn of_part(&self, part: ParamPart) -> impl Iterator<Item = usize> + '_ {
        (0..self.vars.len()).filter(move |&i| self.parts[i] == part)
    }

    /// Parameter `i` made whole from every rank's master slice, in `kind` (the slices are
    /// cast before the gather: a bf16 copy moves half the bytes).
    fn gather_var(&self, world: &dyn Collective, i: usize, kind: Kind) -> Result<()> {
        let var = &self.vars[i];
        let whole = Tensor::zeros(self.shapes[i].as_slice(), (kind, var.device()));
        let _guard = tch::no_grad_guard();
        let master = &self.masters[i];
        let local = if master.kind() == kind {
            master.shallow_clone()
        } else {
            master.to_kind(kind)
        };
        gather_into(world, &local, self.spec, &whole.view([-1]))?;
        var.shallow_clone().set_data(&whole);
        Ok(())
    }

    /// Makes every parameter whole, exactly (`full`: all-gathered from the master slices in
    /// their f32; a collective). For checkpoints, weight syncs, checksums and loading.
    pub fn whole(&self, world: &dyn Collective) -> Result<()> {
        if self.held.get() == Held::Exact {
            return Ok(());
        }
        for i in 0..self.vars.len() {
            self.gather_var(world, i, self.masters[i].kind())?;
        }
        self.held.set(Held::Exact);
        Ok(())
    }

    /// Makes every parameter whole for computing (rollouts, statistics, evaluation): as
    /// [`ParamShards::whole`], but a parameter with a compute copy is gathered in its compute
    /// kind. Keeps an exact whole model as it is. A collective.
    pub fn whole_for_compute(&self, world: &dyn Collective) -> Result<()> {
        if self.held.get() != Held::Released {
            return Ok(());
        }
        // Part by part, in the parameters' order (the same on every rank): one all-gather per
        // bucket.
        let mut parts: Vec<ParamPart> = Vec::new();
        for &part in &self.parts {
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        for part in parts {
            self.gather_part(world, part)?;
        }
        self.held.set(Held::Compute);
        Ok(())
    }

    /// How many parameters have a compute copy in another kind than their master's, and
    /// their elements.
    pub fn compute_copies(&self) -> (usize, i64) {
        self.copies
    }

    /// Frees a compute copy of the whole model (nothing to write back).
    fn drop_compute_copy(&self) {
        if self.held.get() != Held::Compute {
            return;
        }
        let _guard = tch::no_grad_guard();
        for var in &self.vars {
            var.shallow_clone().set_data(&empty(var));
        }
        self.held.set(Held::Released);
        rlvr_core::memory::trim_heap();
    }

    /// `full`, the parameters released: rank 0 alone gathers every parameter whole (one tensor
    /// at a time; the other ranks only send their slices), to write a checkpoint. Every rank
    /// calls it and then [`ParamShards::release_main`].
    pub fn whole_on_main(&self, world: &dyn Collective) -> Result<()> {
        self.drop_compute_copy();
        if self.level != Sharding::Full || self.held.get() == Held::Exact {
            return Ok(());
        }
        for (i, var) in self.vars.iter().enumerate() {
            let numel = self.shapes[i].iter().product();
            if let Some(whole) = gather_to_main(world, &self.masters[i], self.spec, numel)? {
                let _guard = tch::no_grad_guard();
                let whole = whole.to_kind(var.kind()).reshape(self.shapes[i].as_slice());
                var.shallow_clone().set_data(&whole);
            }
        }
        self.main_whole.set(world.is_main());
        Ok(())
    }

    /// Whether the parameters are not the exact whole model (`full` after an update, or
    /// holding compute copies): a checkpoint then streams from the masters.
    pub fn released(&self) -> bool {
        self.level == Sharding::Full && self.held.get() != Held::Exact
    }

    /// `full`, the parameters released: the tensor files of a checkpoint streamed to rank 0 —
    /// for each file of `files` (file name, parameter names), every trainable parameter
    /// gathered whole on rank 0 one at a time and appended to that file's spool in `spools`
    /// (given on rank 0 only), a frozen one taken from `frozen`. No rank holds more than one
    /// whole tensor. A collective: every rank calls it with the same `files`. Returns rank 0's
    /// spools, by file.
    pub fn spool_model(
        &self,
        world: &dyn Collective,
        files: &[(String, Vec<String>)],
        frozen: &dyn Fn(&str) -> Option<Tensor>,
        spools: Option<&std::path::Path>,
    ) -> Result<Vec<(String, Spool)>> {
        let mut out = Vec::new();
        for (k, (file, names)) in files.iter().enumerate() {
            let mut spool = spools
                .map(|dir| Spool::create(&dir.join(format!(".model-{k}.spool"))))
                .transpose()?;
            for name in names {
                let whole = match self.names.iter().position(|n| n == name) {
                    Some(i) => {
                        let numel = self.shapes[i].iter().product();
                        gather_to_main(world, &self.masters[i], self.spec, numel)?
                            .map(|t| t.reshape(self.shapes[i].as_slice()))
                    }
                    None => spool.as_ref().and_then(|_| frozen(name)),
                };
                if let Some(spool) = spool.as_mut() {
                    let whole = whole.ok_or_else(|| {
                        TrainError::Run(format!("internal: no tensor `{name}` to write"))
                    })?;
                    spool.push(name.clone(), &whole)?;
                }
            }
            if let Some(spool) = spool {
                out.push((file.clone(), spool));
            }
        }
        Ok(out)
    }

    /// Frees what [`ParamShards::whole_on_main`] gathered.
    pub fn release_main(&self) -> Result<()> {
        if !self.main_whole.replace(false) {
            return Ok(());
        }
        let _guard = tch::no_grad_guard();
        for var in &self.vars {
            var.shallow_clone().set_data(&empty(var));
        }
        rlvr_core::memory::trim_heap();
        Ok(())
    }

    /// `full`: takes this rank's slices of the exact whole parameters as its masters (they may
    /// have been loaded or broadcast meanwhile) and frees the whole parameters; a compute copy
    /// is only freed.
    pub fn release(&self) -> Result<()> {
        self.drop_compute_copy();
        if self.level != Sharding::Full || self.held.get() != Held::Exact {
            return Ok(());
        }
        let _guard = tch::no_grad_guard();
        for (i, var) in self.vars.iter().enumerate() {
            if var.size() != self.shapes[i] {
                return Err(TrainError::Run(format!(
                    "internal: parameter {i} has shape {:?}, expected {:?}",
                    var.size(),
                    self.shapes[i]
                )));
            }
            self.masters[i]
                .shallow_clone()
                .copy_(&self.spec.slice(var).to_kind(Kind::Float));
            var.shallow_clone().set_data(&empty(var));
        }
        self.held.set(Held::Released);
        rlvr_core::memory::trim_heap();
        Ok(())
    }

    /// The hooks of one micro-batch's sharded backward over `world`.
    pub fn hooks<'a>(&'a self, world: &'a dyn Collective) -> Hooks<'a> {
        Hooks {
            shards: self,
            world,
            prefetched: RefCell::new(None),
        }
    }

    /// Zero gradient slices for a mini-batch.
    pub fn zero_grads(&self) {
        let device = self.vars.first().map(|v| v.device());
        *self.grads.borrow_mut() = self
            .lens
            .iter()
            .map(|&len| Tensor::zeros([len], (Kind::Float, device.unwrap_or(tch::Device::Cpu))))
            .collect();
    }

    /// Frees the gradient slices (after the optimizer step).
    fn free_grads(&self) {
        self.grads.borrow_mut().clear();
    }

    /// The global L2 norm of the gradient, from every rank's slices (a collective).
    pub fn grad_norm(&self, world: &dyn Collective) -> Result<f64> {
        let local: f64 = self
            .grads
            .borrow()
            .iter()
            .map(|g| g.norm().double_value(&[]).powi(2))
            .sum();
        Ok(world.sum(&[local])?[0].sqrt())
    }

    /// The name-free index of the first parameter slice holding a non-finite value on any rank
    /// (a collective).
    pub fn any_nonfinite(&self, world: &dyn Collective) -> Result<bool> {
        let _guard = tch::no_grad_guard();
        let local = if self.level == Sharding::Full {
            self.masters.iter().any(|m| !all_finite(m))
        } else {
            self.vars.iter().any(|v| !all_finite(v))
        };
        crate::sharding::any_rank(world, local)
    }

    /// The optimizer step of the shared trainer loop on the slices: skipped when the summed
    /// `loss` or the gradient norm is not finite, the gradient clipped to `grad_clip` (0 = off)
    /// by its global norm, AdamW on this rank's slices; under `gradients` the parameters are
    /// then all-gathered whole.
    pub fn optimizer_step(
        &self,
        opt: &mut AdamW,
        world: &dyn Collective,
        loss: f64,
        lr: f64,
        grad_clip: f64,
    ) -> Result<StepOutcome> {
        let grad_norm = self.grad_norm(world)?;
        if !loss.is_finite() || !grad_norm.is_finite() {
            self.free_grads();
            return Ok(StepOutcome::Skipped { loss, grad_norm });
        }
        let scale = if grad_clip > 0.0 && grad_norm > grad_clip {
            grad_clip / grad_norm
        } else {
            1.0
        };
        let grads = std::mem::take(&mut *self.grads.borrow_mut());
        if grads.len() != self.vars.len() {
            return Err(TrainError::Run(
                "internal: the optimizer step came before any gradient".into(),
            ));
        }
        let pairs = grads
            .into_iter()
            .enumerate()
            .map(|(i, grad)| {
                let param = match self.level {
                    Sharding::Full => self.masters[i].shallow_clone(),
                    _ => self.spec.slice(&self.vars[i]),
                };
                (param.numel() > 0).then_some((param, grad))
            })
            .collect();
        opt.step_on(pairs, lr, scale)?;
        rlvr_core::memory::trim_heap();
        if self.level == Sharding::Gradients {
            gather_whole(world, &self.vars, self.spec)?;
        }
        Ok(StepOutcome::Applied { grad_norm })
    }

    /// Whether the update gathers parts (`full`, the parameters released).
    fn gathers_parts(&self) -> bool {
        self.level == Sharding::Full && self.held.get() == Held::Released
    }

    fn part_buckets(&self, part: ParamPart) -> &[Bucket] {
        self.gather_buckets.get(&part).map_or(&[], Vec::as_slice)
    }

    /// Makes `part`'s parameters whole in their compute kinds: one all-gather per bucket,
    /// each waited for before the next starts.
    fn gather_part(&self, world: &dyn Collective, part: ParamPart) -> Result<()> {
        if !self.gathers_parts() {
            return Ok(());
        }
        self.fill_part(part, &mut |bucket| {
            let local = pack_slices(bucket, &self.masters)?;
            Ok(world.all_gather_tensor(&local)?)
        })
    }

    /// Starts the all-gathers of `part`'s buckets without waiting (a prefetch); `None` when the
    /// update gathers nothing.
    fn start_part<'a>(
        &self,
        world: &'a dyn Collective,
        part: ParamPart,
    ) -> Result<Option<Started<'a>>> {
        if !self.gathers_parts() {
            return Ok(None);
        }
        let mut started = Vec::new();
        for bucket in self.part_buckets(part) {
            let local = pack_slices(bucket, &self.masters)?;
            started.push(world.all_gather_tensor_start(&local)?);
        }
        Ok(Some(started))
    }

    /// Makes `part`'s parameters whole from the gathers [`ParamShards::start_part`] started.
    fn finish_part(&self, part: ParamPart, started: Started<'_>) -> Result<()> {
        if !self.gathers_parts() {
            return Ok(());
        }
        let mut started = started.into_iter();
        self.fill_part(part, &mut |_| match started.next() {
            Some(pending) => Ok(pending.wait()?),
            None => Err(TrainError::Run(
                "internal: a prefetched part has fewer gathers than buckets".into(),
            )),
        })
    }

    /// Gives each parameter of `part` a whole tensor in its compute kind and fills it from the
    /// gathered buckets `gathered(bucket)` returns (`[world, bucket.len]`), in bucket order.
    fn fill_part(
        &self,
        part: ParamPart,
        gathered: &mut dyn FnMut(&Bucket) -> Result<Tensor>,
    ) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let mut wholes: HashMap<usize, Tensor> = HashMap::new();
        for i in self.of_part(part) {
            let whole = Tensor::f_empty(
                self.shapes[i].as_slice(),
                (self.compute_kinds[i], self.vars[i].device()),
            )?;
            wholes.insert(i, whole);
        }
        for bucket in self.part_buckets(part) {
            let all = gathered(bucket)?;
            let dest = |i: usize| wholes[&i].view([-1]);
            unpack_gathered(bucket, &all, self.spec, &dest)?;
        }
        for (i, whole) in wholes {
            self.vars[i].shallow_clone().set_data(&whole);
        }
        Ok(())
    }

    fn release_part(&self, part: ParamPart) {
        if self.level != Sharding::Full || self.held.get() != Held::Released {
            return;
        }
        let _guard = tch::no_grad_guard();
        for i in self.of_part(part) {
            self.vars[i].shallow_clone().set_data(&empty(&self.vars[i]));
        }
    }

    fn zero_part_grads(&self, part: ParamPart) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for i in self.of_part(part) {
            let g = self.vars[i].grad();
            if !g.defined() {
                return Err(TrainError::Run(format!(
                    "internal: parameter {i} has no gradient to shard"
                )));
            }
            let zeros = Tensor::zeros(self.shapes[i].as_slice(), (g.kind(), g.device()));
            g.shallow_clone().set_data(&zeros);
        }
        Ok(())
    }

    /// Adds `part`'s gradients, summed over the ranks, to their owners' slices (one
    /// reduce-scatter per bucket) and frees them.
    fn reduce_part_grads(&self, world: &dyn Collective, part: ParamPart) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let grads = self.grads.borrow();
        if grads.len() != self.vars.len() {
            return Err(TrainError::Run(
                "internal: gradients reduced outside a mini-batch".into(),
            ));
        }
        let flat = |i: usize| self.vars[i].grad().view([-1]);
        for bucket in self
            .reduce_buckets
            .get(&part)
            .map_or(&[][..], Vec::as_slice)
        {
            let all = pack_grads(bucket, self.spec, &flat)?;
            let mine = world.reduce_scatter_tensor(&all)?;
            add_reduced(bucket, &mine, &grads)?;
        }
        for i in self.of_part(part) {
            let g = self.vars[i].grad();
            g.shallow_clone().set_data(&empty(&g));
        }
        Ok(())
    }
}

/// The [`ShardHooks`] of one micro-batch: gathers, frees and reduces through the shards, the
/// part the decoder names next gathered while it computes (one part ahead, as FSDP's
/// forward and backward prefetch).
pub struct Hooks<'a> {
    shards: &'a ParamShards,
    world: &'a dyn Collective,
    /// The part whose gathers are in flight, and those gathers.
    prefetched: RefCell<Option<(ParamPart, Started<'a>)>>,
}

impl ShardHooks for Hooks<'_> {
    fn gather(&self, part: ParamPart) -> rlvr_core::Result<()> {
        let done = match self.prefetched.borrow_mut().take() {
            Some((p, started)) if p == part => self.shards.finish_part(part, started),
            Some((_, started)) => {
                // A hint not followed: its gathers complete (every rank started them), unused.
                for pending in started {
                    let _unused = pending.wait().map_err(collective)?;
                }
                self.shards.gather_part(self.world, part)
            }
            None => self.shards.gather_part(self.world, part),
        };
        done.map_err(collective)
    }
    fn prefetch(&self, part: ParamPart) -> rlvr_core::Result<()> {
        if self.prefetched.borrow().is_some() {
            return Ok(());
        }
        let started = self
            .shards
            .start_part(self.world, part)
            .map_err(collective)?;
        *self.prefetched.borrow_mut() = started.map(|s| (part, s));
        Ok(())
    }
    fn release(&self, part: ParamPart) -> rlvr_core::Result<()> {
        self.shards.release_part(part);
        Ok(())
    }
    fn zero_grads(&self, part: ParamPart) -> rlvr_core::Result<()> {
        self.shards.zero_part_grads(part).map_err(collective)
    }
    fn reduce_grads(&self, part: ParamPart) -> rlvr_core::Result<()> {
        self.shards
            .reduce_part_grads(self.world, part)
            .map_err(collective)
    }
}
