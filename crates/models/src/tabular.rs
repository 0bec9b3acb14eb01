//! A tabular policy: one row of logits per state, where the state is the sequence of actions taken
//! so far (the toy tree of SimKO's Fig. 5: actions A–D, depth 3). It implements the same
//! [`Policy`] trait as the transformers, so every loss runs on it unchanged.

use documented::DocumentedFields;
use rlvr_core::{
    token_stats_from_logits, CoreError, FinishReason, Generation, ModelConfig, Policy,
    SamplingConfig, SequenceBatch, StatsNeeds, TokenStats,
};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn::{Init, VarStore};
use tch::{Device, Kind, Tensor};

/// Configuration of the `tabular` model.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct TabularConfig {
    /// Number of actions (tokens).
    pub actions: i64,
    /// Number of steps per episode (response length).
    pub depth: i64,
}

impl Default for TabularConfig {
    fn default() -> Self {
        TabularConfig {
            actions: 4,
            depth: 3,
        }
    }
}

rlvr_core::describe_fields!(TabularConfig);
rlvr_core::register!(
    model,
    "tabular",
    "a logit table per action prefix (toy tree task), uniform start",
    TabularConfig
);

#[typetag::serde(name = "tabular")]
impl ModelConfig for TabularConfig {
    fn build(&self, device: Device) -> rlvr_core::Result<Box<dyn Policy>> {
        Ok(Box::new(TabularPolicy::new(
            self.actions,
            self.depth,
            device,
        )?))
    }

    fn codec(&self) -> rlvr_core::Result<Box<dyn rlvr_core::TextCodec>> {
        Ok(Box::new(LetterCodec {
            actions: self.actions,
        }))
    }
}

/// Logits `[states, actions]` over all action prefixes of length < depth.
pub struct TabularPolicy {
    vs: VarStore,
    table: Tensor,
    actions: i64,
    depth: i64,
}

impl TabularPolicy {
    /// A uniform policy (all logits 0).
    pub fn new(actions: i64, depth: i64, device: Device) -> rlvr_core::Result<TabularPolicy> {
        if actions < 2 || !(1..=8).contains(&depth) {
            return Err(CoreError::invalid(
                "model.actions/depth",
                format!("{actions}/{depth}"),
                "need actions >= 2 and 1 <= depth <= 8",
            ));
        }
        let states: i64 = (0..depth).map(|d| actions.pow(d as u32)).sum();
        let vs = VarStore::new(device);
        let table = vs.root().var("table", &[states, actions], Init::Const(0.0));
        Ok(TabularPolicy {
            vs,
            table,
            actions,
            depth,
        })
    }

    /// State index of each response position `[B, T]` from the response tokens (prefix code).
    fn states(&self, tokens: &Tensor) -> rlvr_core::Result<Tensor> {
        let t = tokens.size()[1];
        let mut cols = Vec::new();
        let mut code = tokens.f_select(1, 0)?.f_zeros_like()?;
        let mut offset = 0i64;
        for d in 0..t.min(self.depth) {
            cols.push(code.f_add_scalar(offset)?);
            offset += self.actions.pow(d as u32);
            code = code
                .f_mul_scalar(self.actions)?
                .f_add(&tokens.f_select(1, d)?.f_clamp(0, self.actions - 1)?)?;
        }
        Ok(Tensor::f_stack(&cols, 1)?)
    }
}

impl Policy for TabularPolicy {
    fn vocab_size(&self) -> i64 {
        self.actions
    }

    fn device(&self) -> Device {
        self.vs.device()
    }

    /// Prompts are ignored: the response tokens alone define the states.
    fn token_stats(
        &self,
        batch: &SequenceBatch,
        needs: &StatsNeeds,
    ) -> rlvr_core::Result<TokenStats> {
        let l = batch.input_ids.size()[1];
        let responses = batch
            .input_ids
            .f_narrow(1, batch.prompt_len, l - batch.prompt_len)?;
        if responses.size()[1] > self.depth {
            return Err(CoreError::Shape(format!(
                "responses of {} tokens exceed the tree depth {}",
                responses.size()[1],
                self.depth
            )));
        }
        let states = self.states(&responses)?;
        let logits = self
            .table
            .f_index_select(0, &states.f_reshape([-1])?)?
            .f_reshape([states.size()[0], states.size()[1], self.actions])?;
        token_stats_from_logits(&logits, &responses, needs)
    }

    fn generate(
        &self,
        prompt_ids: &Tensor,
        _prompt_mask: &Tensor,
        sampling: &SamplingConfig,
        _stop: &[i64],
    ) -> rlvr_core::Result<Generation> {
        let _guard = tch::no_grad_guard();
        let b = prompt_ids.size()[0];
        let steps = self.depth.min(sampling.max_new_tokens.max(1));
        let mut sampler =
            crate::sampling::Sampler::from_stream(sampling.seed, sampling.first_stream);
        let mut tokens: Vec<Tensor> = Vec::new();
        let mut logps: Vec<Tensor> = Vec::new();
        for _ in 0..steps {
            let so_far = if tokens.is_empty() {
                Tensor::zeros([b, 0], (Kind::Int64, self.device()))
            } else {
                Tensor::f_stack(&tokens, 1)?
            };
            let state = if tokens.is_empty() {
                Tensor::zeros([b], (Kind::Int64, self.device()))
            } else {
                let padded = Tensor::f_cat(&[&so_far, &so_far.f_select(1, 0)?.f_unsqueeze(1)?], 1)?;
                self.states(&padded)?.f_select(1, so_far.size()[1])?
            };
            let logits = self.table.f_index_select(0, &state)?;
            let lp = crate::sampling::filtered_logprobs(&logits, sampling)?;
            let (ids, chosen) = sampler.sample(&lp)?;
            tokens.push(Tensor::from_slice(&ids).f_to_device(self.device())?);
            logps.push(
                Tensor::from_slice(&chosen)
                    .f_to_kind(Kind::Float)?
                    .f_to_device(self.device())?,
            );
        }
        let tokens = Tensor::f_stack(&tokens, 1)?;
        Ok(Generation {
            mask: tokens.f_ones_like()?.f_to_kind(Kind::Float)?,
            logp: Tensor::f_stack(&logps, 1)?,
            tokens,
            finish: vec![FinishReason::Length; b as usize],
            record: None,
        })
    }

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }

    fn save(&self, dir: &Path) -> rlvr_core::Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        self.vs.save(dir.join("table.safetensors"))?;
        Ok(())
    }

    fn load(&mut self, dir: &Path) -> rlvr_core::Result<()> {
        crate::checkpoint::load_weights(&mut self.vs, dir)
            .map_err(crate::error::ModelError::into_load_error)
    }
}

/// Actions as letters: 0 → A, 1 → B, ...
#[derive(Debug, Clone)]
pub struct LetterCodec {
    /// Number of actions.
    pub actions: i64,
}

impl rlvr_core::TextCodec for LetterCodec {
    fn encode(&self, text: &str) -> rlvr_core::Result<Vec<i64>> {
        text.chars()
            .map(|c| {
                let i = (c as i64) - ('A' as i64);
                if (0..self.actions).contains(&i) {
                    Ok(i)
                } else {
                    Err(CoreError::config(
                        "tokenizer",
                        format!("{c:?} is not an action letter"),
                    ))
                }
            })
            .collect()
    }

    fn decode(&self, ids: &[i64]) -> rlvr_core::Result<String> {
        Ok(ids
            .iter()
            .filter(|i| (0..self.actions).contains(*i))
            .map(|&i| char::from(b'A' + i as u8))
            .collect())
    }

    fn stop_tokens(&self) -> Vec<i64> {
        Vec::new()
    }

    fn pad_token(&self) -> i64 {
        0
    }
}
