//! Supervised warm start (`rlvr sft`): maximum likelihood of target responses given prompts — a
//! task's generated solutions or a dataset's worked solutions — with the same AdamW and
//! [`optimizer_step`] as the RL loop (grad-norm clip 1, warmup over 5% of the steps, then cosine).

use crate::config::{apply_sets, default_document, set, RunConfig};
use crate::config_bail;
use crate::distributed::Single;
use crate::error::{Result, TrainError};
use crate::evaluation::{evaluate, EvalOptions};
use crate::optim::{lr_at, optimizer_step, AdamW, Schedule};
use crate::padding::{encode_prompts, pad_right};
use crate::session::{Placement, Session};
use crate::trainer::Reporter;
use rlvr_core::{Policy, Problem, SamplingConfig, SequenceBatch, StatsNeeds, TextCodec};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// What `rlvr sft` trains.
#[derive(Debug, Clone)]
pub struct SftSpec {
    /// Registered model name (e.g. `tiny`) or a Hugging Face folder.
    pub model: String,
    /// Task whose solution generator provides the targets (and the held-out check).
    pub task: String,
    /// `KEY=VALUE` overrides of the run document (`[model]`, `[task]`, `train.device`).
    pub sets: Vec<String>,
    /// Device (cpu | cuda | cuda:N); `None` = `train.device` of the document (cpu).
    pub device: Option<String>,
    /// Optimizer steps.
    pub steps: u64,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Seed.
    pub seed: u64,
    /// Output folder (HF layout).
    pub out: PathBuf,
    /// A dataset with worked solutions instead of the task's generator.
    pub data: Option<PathBuf>,
}

/// The outcome of [`sft`].
#[derive(Debug, Clone, Copy)]
pub struct SftResult {
    /// Loss of the last step.
    pub final_loss: f64,
    /// Greedy accuracy on up to 100 held-out task problems (`None` when trained on a dataset),
    /// and the number of problems.
    pub greedy_accuracy: Option<(f64, usize)>,
}

/// A source of (prompt, target) examples.
enum Examples {
    Dataset(Vec<(String, String)>),
    Task(Vec<Problem>),
}

impl Examples {
    fn get(
        &self,
        task: &dyn rlvr_core::Task,
        spec: &SftSpec,
        step: u64,
        i: usize,
    ) -> Result<(String, String)> {
        match self {
            Examples::Dataset(pairs) => {
                Ok(pairs[(step as usize * spec.batch + i) % pairs.len()].clone())
            }
            Examples::Task(train) => {
                let idx =
                    ((step as usize * spec.batch + i) * 7919 + spec.seed as usize) % train.len();
                let p = &train[idx];
                let sol = task
                    .solution(p, spec.seed.wrapping_add(step * 1000 + i as u64))
                    .ok_or_else(|| {
                        TrainError::Config("the task has no solution generator".into())
                    })?;
                Ok((p.prompt.clone(), sol))
            }
        }
    }
}

fn dataset_examples(path: &Path, codec: &dyn TextCodec) -> Result<Examples> {
    let ds = rlvr_rewards::data::read(path, rlvr_rewards::data::OnBadRow::Fail)?;
    let mut pairs = Vec::new();
    for r in &ds.records {
        let Some(sol) = &r.solution else { continue };
        let problem = Problem {
            id: String::new(),
            prompt: r.user_prompt(),
            ground_truth: String::new(),
            data_source: String::new(),
            messages: r.conversation(),
            extra_info: None,
        };
        pairs.push((codec.render_prompt(&problem)?, sol.clone()));
    }
    if pairs.is_empty() {
        config_bail!(
            "{}: no rows with a `solution` to learn from",
            path.display()
        );
    }
    Ok(Examples::Dataset(pairs))
}

/// The run document of `rlvr sft`: the default run with the spec's model and task, its
/// overrides and device.
fn sft_config(spec: &SftSpec) -> Result<RunConfig> {
    let mut doc = default_document();
    let mut model = toml::Table::new();
    if Path::new(&spec.model).is_dir() {
        set(&mut model, "type", "hf")?;
        set(&mut model, "path", spec.model.as_str())?;
    } else {
        set(&mut model, "type", spec.model.as_str())?;
    }
    doc.insert("model".into(), toml::Value::Table(model));
    let mut task = toml::Table::new();
    set(&mut task, "type", spec.task.as_str())?;
    doc.insert("task".into(), toml::Value::Table(task));
    if let Some(device) = &spec.device {
        set(&mut doc, "train.device", device.as_str())?;
    }
    apply_sets(&mut doc, &spec.sets)?;
    RunConfig::from_document(doc)
}

/// One maximum-likelihood step on (prompt, target) pairs; returns the mean token NLL.
fn sft_step(
    policy: &dyn Policy,
    codec: &dyn TextCodec,
    prompts: &[String],
    targets: &[Vec<i64>],
) -> Result<f64> {
    let device = policy.device();
    let (ids, pmask) = encode_prompts(codec, prompts, device)?;
    let (r, rm) = pad_right(targets, codec.pad_token());
    let (r, rm) = (r.to_device(device), rm.to_device(device));
    let seq = SequenceBatch {
        input_ids: Tensor::cat(&[&ids, &r], 1),
        attention_mask: Tensor::cat(&[&pmask, &rm], 1),
        prompt_len: ids.size()[1],
    };
    AdamW::zero_grad(policy.var_store());
    let mask = rm.to_kind(Kind::Float);
    let tokens = mask.sum(Kind::Float);
    Ok(
        policy.backward_loss(&seq, &StatsNeeds::default(), &mut |stats| {
            Ok(-(&stats.logp * &mask).sum(Kind::Float) / &tokens)
        })?,
    )
}

/// Runs supervised fine-tuning and saves the model to `spec.out`.
pub fn sft(spec: &SftSpec, reporter: &dyn Reporter) -> Result<SftResult> {
    let cfg = sft_config(spec)?;
    // The seed of the model's initialisation (a registered model seeds its own).
    tch::manual_seed(spec.seed as i64);
    let session = Session::open(&cfg, Placement::single())?;
    let (task, codec, policy) = (&session.task, &session.codec, &session.policy);
    let examples = match &spec.data {
        Some(path) => dataset_examples(path, codec.as_ref())?,
        None => Examples::Task(session.problems.train.clone()),
    };
    let mut opt = AdamW::new(policy.var_store(), 0.0);
    let stop = codec.stop_tokens();
    let mut final_loss = f64::NAN;
    for step in 0..spec.steps {
        let mut prompts = Vec::new();
        let mut targets = Vec::new();
        for i in 0..spec.batch {
            let (prompt, sol) = examples.get(task.as_ref(), spec, step, i)?;
            prompts.push(prompt);
            let mut t = codec.encode(&sol)?;
            t.extend(stop.first());
            targets.push(t);
        }
        final_loss = sft_step(policy.as_ref(), codec.as_ref(), &prompts, &targets)?;
        let lr = lr_at(step, spec.steps, spec.lr, spec.steps / 20, Schedule::Cosine);
        optimizer_step(&mut opt, policy.var_store(), final_loss, lr, 1.0)?;
        if step % 100 == 0 || step + 1 == spec.steps {
            reporter.message(&format!(
                "sft step {}/{}: loss {final_loss:.4}",
                step + 1,
                spec.steps
            ));
        }
    }
    policy.save(&spec.out)?;
    if spec.data.is_some() {
        return Ok(SftResult {
            final_loss,
            greedy_accuracy: None,
        });
    }
    let test: Vec<_> = session.problems.test.iter().take(100).cloned().collect();
    let greedy = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: 16,
        ..Default::default()
    };
    let r = evaluate(
        &Single,
        &session,
        &test,
        &EvalOptions {
            diagnostics: false,
            ..EvalOptions::new(1, greedy)
        },
    )?;
    Ok(SftResult {
        final_loss,
        greedy_accuracy: Some((r.mean_at_n, r.problems)),
    })
}
