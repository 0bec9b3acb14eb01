//! The problems a run trains and evaluates on (a built-in task or dataset files), the verifier
//! that scores them, and the prompt text and token ids a policy sees.

use crate::config::RunConfig;
use crate::config_bail;
use crate::error::{Result, TrainError};
use rlvr_core::{Problem, Split, Task, TextCodec, Verifier};
use rlvr_models::tokenizer::{HfTokenizer, Message};
use std::path::Path;
use tch::{Device, Tensor};

/// Training problems, held-out problems and the verifier of a run.
pub struct Problems {
    /// Problems the RL loop draws from.
    pub train: Vec<Problem>,
    /// Held-out problems for evaluation.
    pub test: Vec<Problem>,
    /// Further validation sets (`data.eval_data`): a name (the file stem) and its problems.
    pub validation: Vec<(String, Vec<Problem>)>,
    /// Scores responses.
    pub verifier: Box<dyn Verifier>,
}

/// Loads the task's problems (or the dataset's) and its verifier.
pub fn load_problems(cfg: &RunConfig) -> Result<Problems> {
    let task: Box<dyn Task> = match (&cfg.task, &cfg.data) {
        (Some(t), _) => t.build()?,
        (None, Some(d)) => {
            use rlvr_rewards::data::{read, OnBadRow};
            if !d.template.contains("{prompt}") {
                config_bail!(
                    "data.template must contain {{prompt}}, got {:?}",
                    d.template
                );
            }
            let train = read(Path::new(&d.train), OnBadRow::Fail)?;
            let (train_rows, test_rows) = if d.test.is_empty() {
                let hold = d.holdout.min(train.records.len() / 2);
                let cut = train.records.len() - hold;
                (train.records[..cut].to_vec(), train.records[cut..].to_vec())
            } else {
                (
                    train.records,
                    read(Path::new(&d.test), OnBadRow::Fail)?.records,
                )
            };
            Box::new(rlvr_rewards::data::task::DatasetTask::with_template(
                &train_rows,
                &test_rows,
                &d.template,
            ))
        }
        (None, None) => config_bail!("no task or data"),
    };
    let train = task.problems(Split::Train)?;
    if train.is_empty() {
        config_bail!("the task has no training problems");
    }
    let mut validation = Vec::new();
    if let Some(d) = &cfg.data {
        use rlvr_rewards::data::{read, OnBadRow};
        for file in &d.eval_data {
            let path = Path::new(file);
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.clone());
            if validation.iter().any(|(n, _)| *n == name) {
                config_bail!("data.eval_data names two files called `{name}`; rename one");
            }
            let records = read(path, OnBadRow::Fail)?.records;
            let set =
                rlvr_rewards::data::task::DatasetTask::with_template(&[], &records, &d.template)
                    .problems(Split::Test)?;
            validation.push((name, set));
        }
    }
    let verifier = match &cfg.reward {
        Some(spec) => spec.build()?,
        None => task.verifier(),
    };
    Ok(Problems {
        train,
        test: task.problems(Split::Test)?,
        validation,
        verifier,
    })
}

/// The chat tokenizer of a chat model (its template wraps prompts), or `None`.
pub fn chat_tokenizer(cfg: &RunConfig) -> Result<Option<HfTokenizer>> {
    if !cfg.model.chat() {
        return Ok(None);
    }
    let path = cfg
        .document
        .get("model")
        .and_then(|m| m.get("path"))
        .and_then(|p| p.as_str())
        .ok_or_else(|| TrainError::Config("a chat model needs `model.path`".into()))?;
    Ok(Some(HfTokenizer::from_dir(Path::new(path))?))
}

/// The prompt text a policy sees: through the chat template for chat models (the whole
/// conversation, system prompt included, when the data has one), else the prompt text.
pub fn prompt_text(problem: &Problem, chat: Option<&HfTokenizer>) -> Result<String> {
    match chat {
        Some(tok) if !problem.messages.is_empty() => {
            let messages: Vec<Message> = problem
                .messages
                .iter()
                .map(|(role, content)| Message {
                    role: role.clone(),
                    content: content.clone(),
                })
                .collect();
            Ok(tok.apply_chat_template(&messages, true)?)
        }
        Some(tok) => Ok(tok.apply_chat_template(
            &[Message {
                role: "user".into(),
                content: problem.prompt.clone(),
            }],
            true,
        )?),
        None => Ok(problem.prompt.clone()),
    }
}

/// Left-pads encoded prompts to a common width: `(ids, mask)`, both `[B, width]` i64.
pub fn encode_prompts(
    codec: &dyn TextCodec,
    prompts: &[String],
    device: Device,
) -> Result<(Tensor, Tensor)> {
    let encoded: Vec<Vec<i64>> = prompts
        .iter()
        .map(|p| codec.encode(p))
        .collect::<rlvr_core::Result<_>>()?;
    let width = encoded.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let pad = codec.pad_token();
    let mut ids = Vec::with_capacity(encoded.len() * width);
    let mut mask = Vec::with_capacity(encoded.len() * width);
    for e in &encoded {
        let fill = width - e.len();
        ids.extend(std::iter::repeat_n(pad, fill).chain(e.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, fill).chain(std::iter::repeat_n(1i64, e.len())));
    }
    let shape = [encoded.len() as i64, width as i64];
    Ok((
        Tensor::from_slice(&ids).reshape(shape).to_device(device),
        Tensor::from_slice(&mask).reshape(shape).to_device(device),
    ))
}

/// Right-pads token sequences to a common width: `(ids, mask)`, both `[B, width]` i64.
pub fn pad_right(rows: &[Vec<i64>], pad: i64) -> (Tensor, Tensor) {
    let width = rows.iter().map(Vec::len).max().unwrap_or(1);
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut mask = Vec::with_capacity(rows.len() * width);
    for t in rows {
        ids.extend(
            t.iter()
                .copied()
                .chain(std::iter::repeat_n(pad, width - t.len())),
        );
        mask.extend(
            std::iter::repeat_n(1i64, t.len()).chain(std::iter::repeat_n(0, width - t.len())),
        );
    }
    let shape = [rows.len() as i64, width as i64];
    (
        Tensor::from_slice(&ids).reshape(shape),
        Tensor::from_slice(&mask).reshape(shape),
    )
}

/// The prompt budget of a run: `max_prompt_length`, or (when 0) the model's context minus the
/// response length. Fails when the response length alone exceeds the model's context.
pub fn prompt_budget(
    policy: &dyn rlvr_core::Policy,
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

/// Drops problems whose prompt (as the policy sees it) is longer than `budget` tokens, never
/// sending them to the model (verl's prompt filter); returns how many were dropped.
pub fn drop_long_prompts(
    problems: &mut Vec<Problem>,
    codec: &dyn TextCodec,
    chat: Option<&HfTokenizer>,
    budget: i64,
) -> Result<usize> {
    let before = problems.len();
    let mut kept = Vec::with_capacity(before);
    for p in problems.drain(..) {
        // A prompt with more bytes than budget × 64 cannot fit; skip tokenizing megabytes.
        let fits = p.prompt.len() <= (budget as usize).saturating_mul(64)
            && codec.encode(&prompt_text(&p, chat)?)?.len() as i64 <= budget;
        if fits {
            kept.push(p);
        }
    }
    *problems = kept;
    Ok(before - problems.len())
}
