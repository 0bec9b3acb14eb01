//! One run session: everything a command that runs a policy on a run's problems needs, set up
//! once from a [`RunConfig`] — the device, the task and its problems, the verifier, the
//! tokenizer (which renders prompts, chat template included), the policy and the rollout
//! sampling settings. Training ([`crate::Trainer`]), evaluation, `rlvr sample` and `rlvr sft`
//! all open one ([`Session::open`]) instead of building these pieces each in their own way.

use crate::config::RunConfig;
use crate::config_bail;
use crate::distributed::Collective;
use crate::error::Result;
use crate::evaluation::{evaluate, EvalOptions};
use crate::rollout::{rollout, Rollout};
use rlvr_core::{Policy, Problem, SamplingConfig, Split, Task, TextCodec, Verifier};
use rlvr_eval::EvalReport;
use tch::Device;

/// Where a session's model lives: which of a node's GPUs `cuda` means (`cuda:LOCAL_RANK`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placement {
    /// This process's rank on its node (torchrun's `LOCAL_RANK`; 0 in one process).
    pub local_rank: usize,
}

impl Placement {
    /// One process on its own: `cuda` is `cuda:0`.
    pub fn single() -> Placement {
        Placement::default()
    }

    /// The device `name` (`train.device`: cpu | cuda | cuda:N) names for this placement; `cuda`
    /// alone is the local rank's GPU. Fails with the valid names, or when CUDA is not available.
    pub fn device(&self, name: &str) -> Result<Device> {
        let device = rlvr_models::device::parse_device(name).map_err(|e| {
            let why = match e {
                rlvr_models::ModelError::Config(why) => why,
                other => other.to_string(),
            };
            crate::TrainError::Config(format!("train.device: {why}"))
        })?;
        Ok(if name == "cuda" {
            Device::Cuda(self.local_rank)
        } else {
            device
        })
    }
}

/// The problems of a run.
pub struct Problems {
    /// Problems the RL loop draws from.
    pub train: Vec<Problem>,
    /// Held-out problems for evaluation.
    pub test: Vec<Problem>,
    /// Further validation sets (`data.eval_data`): a name and its problems.
    pub validation: Vec<(String, Vec<Problem>)>,
}

/// A run's policy, tokenizer, problems, verifier and sampling settings, built once.
pub struct Session {
    /// The policy (the model being trained or evaluated) on its device.
    pub policy: Box<dyn Policy>,
    /// The policy's tokenizer; it renders each problem as the policy sees it.
    pub codec: Box<dyn TextCodec>,
    /// The task the problems come from (its solution generator serves `rlvr sft`).
    pub task: Box<dyn Task>,
    /// Training, held-out and validation problems.
    pub problems: Problems,
    /// Scores responses (the run's `[reward]` routing, else the task's own verifier).
    pub verifier: Box<dyn Verifier>,
    /// Rollout sampling of the run (`train.temperature`, `top_p`, `top_k`, `max_new_tokens`;
    /// seed `train.seed`).
    pub sampling: SamplingConfig,
    /// Longest prompt in tokens that leaves room for the response (None: no limit).
    prompt_budget: Option<i64>,
    /// The generation servers of `[rollout] engine = "server"` (set by the trainer); `None`
    /// generates in this process.
    pub engine: Option<crate::engine::ServerEngine>,
    /// Steps trained into the policy's weights (the version its rollouts are tagged with).
    pub weight_version: u64,
}

impl Session {
    /// Builds the session of `cfg` on the device `train.device` names for `placement`: the task
    /// and its problems, the verifier (reward programs start here), the tokenizer and the
    /// policy. Checks that responses of `train.max_new_tokens` leave room for a prompt in the
    /// model's context; prompts themselves are only checked by [`Session::fit_prompts`].
    pub fn open(cfg: &RunConfig, placement: Placement) -> Result<Session> {
        let device = placement.device(&cfg.train.device)?;
        let task = cfg.task.build()?;
        let train = task.problems(Split::Train)?;
        if train.is_empty() {
            config_bail!("the task has no training problems");
        }
        let validation = task.validation_sets()?;
        let verifier = match &cfg.reward {
            Some(spec) => spec.build()?,
            None => task.verifier(),
        };
        let problems = Problems {
            train,
            test: task.problems(Split::Test)?,
            validation,
        };
        let codec = cfg.model.codec()?;
        let policy = cfg.model.build(device)?;
        let tc = &cfg.train;
        let prompt_budget =
            prompt_budget(policy.as_ref(), tc.max_new_tokens, tc.max_prompt_length)?;
        Ok(Session {
            policy,
            codec,
            task,
            problems,
            verifier,
            sampling: tc.sampling(tc.seed),
            prompt_budget,
            engine: None,
            weight_version: 0,
        })
    }

    /// The run's sampling settings with another seed.
    pub fn sampling_with_seed(&self, seed: u64) -> SamplingConfig {
        SamplingConfig {
            seed,
            ..self.sampling.clone()
        }
    }

    /// The longest prompt in tokens: `train.max_prompt_length`, or the model's context less the
    /// response length; `None` when neither limits it.
    pub fn prompt_budget(&self) -> Option<i64> {
        self.prompt_budget
    }

    /// Drops problems whose prompt, as the policy sees it, is longer than the prompt budget
    /// (verl's prompt filter), so they never reach the model; returns how many were dropped.
    pub fn fit_prompts(&self, problems: &mut Vec<Problem>) -> Result<usize> {
        let Some(budget) = self.prompt_budget else {
            return Ok(0);
        };
        let before = problems.len();
        let mut kept = Vec::with_capacity(before);
        let mut ticker = rlvr_core::progress::Ticker::new(
            format!("checking that prompts fit {budget} tokens"),
            Some(before),
        );
        for (i, p) in problems.drain(..).enumerate() {
            ticker.tick(i);
            // A prompt with more bytes than budget × 64 cannot fit; skip tokenizing megabytes.
            let fits = p.prompt.len() <= (budget as usize).saturating_mul(64)
                && self.codec.encode(&self.codec.render_prompt(&p)?)?.len() as i64 <= budget;
            if fits {
                kept.push(p);
            }
        }
        ticker.finish(before);
        *problems = kept;
        Ok(before - problems.len())
    }

    /// Samples `n` responses for each of `problems` with `sampling` and scores them; with
    /// `record_bytes`, the policy records its forward passes for the update within that memory
    /// ([`crate::rollout::rollout`]).
    pub fn rollout(
        &self,
        problems: &[Problem],
        n: usize,
        sampling: &SamplingConfig,
        record_bytes: u64,
    ) -> Result<Rollout> {
        rollout(self, problems, n, sampling, record_bytes)
    }

    /// Evaluates the policy on `problems` (pass@K, mean@n, concentration diagnostics), the
    /// batches dealt to the ranks of `world`.
    pub fn evaluate(
        &self,
        world: &dyn Collective,
        problems: &[Problem],
        opts: &EvalOptions,
    ) -> Result<EvalReport> {
        evaluate(world, self, problems, opts)
    }
}

/// The prompt budget of a run: `max_prompt_length`, or (when 0) the model's context minus the
/// response length. Fails when the response length alone exceeds the model's context.
pub fn prompt_budget(
    policy: &dyn Policy,
    max_new_tokens: i64,
    max_prompt_length: i64,
) -> Result<Option<i64>> {
    let Some(context) = policy.max_positions() else {
        return Ok((max_prompt_length > 0).then_some(max_prompt_length));
    };
    if max_new_tokens >= context {
        config_bail!(
            "train.max_new_tokens = {max_new_tokens} leaves no room for a prompt in the model's \
             context of {context} positions; lower it"
        );
    }
    let room = context - max_new_tokens;
    if max_prompt_length > room {
        config_bail!(
            "train.max_prompt_length = {max_prompt_length} + train.max_new_tokens = \
             {max_new_tokens} exceed the model's context of {context} positions"
        );
    }
    Ok(Some(if max_prompt_length > 0 {
        max_prompt_length
    } else {
        room
    }))
}
