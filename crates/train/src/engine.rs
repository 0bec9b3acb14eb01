//! Rollout engines (docs/rollouts.md): `native` generates in this process with the policy;
//! `server` hands generation to HTTP servers — `rlvr serve`, SGLang (its native `/generate`) or
//! vLLM (OpenAI `/v1/completions`) — and pushes the policy's weights to them before each step's
//! rollout (`sync = "disk"`: a versioned HF folder, posted to `/update_weights_from_disk`, or to
//! vLLM's `/collective_rpc` worker extension). Requests go to the server with the fewest
//! outstanding, with one retry on another; a server that does not answer is named in the error.

use crate::config_bail;
use crate::error::{Result, TrainError};
use crate::run_dir::FolderLock;
use rlvr_core::atomic::StagedDir;
use rlvr_core::{FinishReason, Policy, SamplingConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Where rollouts are generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// In this process, with the policy being trained.
    #[default]
    Native,
    /// By HTTP servers (`rollout.urls`).
    Server,
}

/// The servers' API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerApi {
    /// SGLang's native API (also `rlvr serve`'s).
    #[default]
    Sglang,
    /// vLLM's OpenAI API, weights through its `/collective_rpc` worker extension.
    Vllm,
}

/// How the trained weights reach the servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// A versioned HF safetensors folder the servers load (a shared file system).
    #[default]
    Disk,
    /// A broadcast per tensor over a c10d group of the trainer (rank 0) and the servers
    /// (SGLang's `/init_weights_update_group` + `/update_weights_from_distributed`; Gloo).
    Distributed,
}

/// What to do when a server fails mid-run.
const RESTART_HINT: &str = "the last checkpoint is intact: start the server(s) again and \
     continue with `rlvr train --resume RUN --rollout-urls URL[,URL]`";

/// The name a LoRA run's adapter is loaded under on the servers.
pub const ADAPTER_NAME: &str = "rlvr-policy";

/// The store prefix (SGLang's `group_name`) of the trainer's weight-update group.
const WEIGHT_GROUP: &str = "rlvr-weights";

/// `[rollout]`: where responses are generated.
#[derive(Debug, Clone, Serialize, Deserialize, documented::DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Where rollouts are generated: native (in this process) | server (rollout.urls).
    pub engine: EngineKind,
    /// Server base URLs (engine = "server"), e.g. ["http://127.0.0.1:30000"].
    pub urls: Vec<String>,
    /// The servers' API: sglang (also `rlvr serve`) | vllm.
    pub api: ServerApi,
    /// Weight sync: disk (a versioned HF folder each step, posted to the servers) | distributed
    /// (broadcast over a c10d group the servers join; sglang API).
    pub sync: SyncMode,
    /// Address the servers reach this trainer at for sync = "distributed" (its TCPStore).
    pub sync_host: String,
    /// Folder for synced weights, readable by the servers ("" = `<run>/rollout-weights`).
    pub sync_dir: String,
    /// Seconds a server may take to answer one request before it counts as dead.
    pub timeout_s: f64,
    /// Requests in flight at most.
    pub max_in_flight: usize,
    /// Partial rollouts (with `train.max_staleness > 0`; rlvr serve, SGLang): each new version
    /// is loaded into the servers as soon as the trainer has it, between decode steps of the
    /// running samples (pause in place, load, continue), each token's version recorded. Fresher
    /// samples, but which weights generate what then depends on timing (docs/async.md).
    pub partial: bool,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            engine: EngineKind::Native,
            urls: Vec::new(),
            api: ServerApi::Sglang,
            sync: SyncMode::Disk,
            sync_dir: String::new(),
            sync_host: "127.0.0.1".into(),
            timeout_s: 600.0,
            max_in_flight: 64,
            partial: false,
        }
    }
}

rlvr_core::describe_fields!(RolloutConfig);

impl RolloutConfig {
    /// Checks the settings (before any work).
    pub fn validate(&self) -> Result<()> {
        if self.engine == EngineKind::Native {
            return Ok(());
        }
        if self.urls.is_empty() {
            config_bail!(
                "rollout.engine = \"server\" needs rollout.urls, e.g. --set \
                 'rollout.urls=[\"http://127.0.0.1:30000\"]' (start one with `rlvr serve`)"
            );
        }
        for u in &self.urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                config_bail!("rollout.urls: {u:?} is not an http:// or https:// URL");
            }
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            config_bail!("rollout.timeout_s = {} must be > 0", self.timeout_s);
        }
        if self.sync == SyncMode::Distributed && self.api != ServerApi::Sglang {
            config_bail!(
                "rollout.sync = \"distributed\" needs rollout.api = \"sglang\" (SGLang or rlvr \
                 serve); vLLM takes weights by disk sync through its worker extension"
            );
        }
        if self.max_in_flight == 0 {
            config_bail!("rollout.max_in_flight must be at least 1");
        }
        Ok(())
    }
}

/// One generated response from a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedSample {
    /// Generated ids (a final stop token included).
    pub tokens: Vec<i64>,
    /// The sampled tokens' log-probs as the server computed them.
    pub logprobs: Vec<f64>,
    /// Why it ended.
    pub finish: FinishReason,
    /// The weight version that generated it (its oldest token's).
    pub version: u64,
    /// The version of each token, when the server says (partial rollouts: the weights changed
    /// while it generated); empty = all `version`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_versions: Vec<u64>,
}

/// The `server` engine: a client of one or more generation servers.
pub struct ServerEngine {
    cfg: RolloutConfig,
    agent: ureq::Agent,
    outstanding: Vec<AtomicUsize>,
    /// Which servers are `rlvr serve` (they take the per-row stream, so samples equal native).
    rlvr: Vec<bool>,
    /// vLLM's model name of each server.
    model_names: Vec<String>,
    /// The version the servers hold.
    synced: Mutex<Option<u64>>,
    /// The weight-update group (sync = "distributed"), once joined.
    group: Mutex<Option<rlvr_dist::C10dGroup>>,
    /// The policy trains LoRA adapters: only they are synced (as a PEFT folder loaded with
    /// `load_lora_adapter`) and requests name them.
    adapters: bool,
    /// Per server: an `rlvr serve --batch-invariant`.
    invariant: Vec<bool>,
}

impl ServerEngine {
    /// Connects to every server (each must answer), learning which are `rlvr serve`. With
    /// `adapters` (a LoRA run) only the adapters are synced, by disk.
    pub fn connect(cfg: &RolloutConfig, adapters: bool) -> Result<ServerEngine> {
        cfg.validate()?;
        if adapters && cfg.sync != SyncMode::Disk {
            config_bail!(
                "a LoRA run syncs its adapters as a PEFT folder (rollout.sync = \"disk\"); the \
                 distributed weight update carries full weights only"
            );
        }
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs_f64(cfg.timeout_s))
            .timeout_connect(Duration::from_secs(10))
            .build();
        let mut rlvr = Vec::new();
        let mut model_names = Vec::new();
        let mut invariant = Vec::new();
        for url in &cfg.urls {
            let info = match cfg.api {
                ServerApi::Sglang => get_json(&agent, &format!("{url}/get_model_info")),
                ServerApi::Vllm => get_json(&agent, &format!("{url}/v1/models")),
            }
            .map_err(|e| TrainError::Run(format!("rollout server {url}: {e}")))?;
            rlvr.push(info.get("engine").and_then(Value::as_str) == Some("rlvr"));
            invariant.push(info.get("batch_invariant").and_then(Value::as_bool) == Some(true));
            model_names.push(
                info.pointer("/data/0/id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        Ok(ServerEngine {
            outstanding: cfg.urls.iter().map(|_| AtomicUsize::new(0)).collect(),
            cfg: cfg.clone(),
            agent,
            rlvr,
            model_names,
            synced: Mutex::new(None),
            group: Mutex::new(None),
            adapters,
            invariant,
        })
    }

    /// Warns about each server that does not generate batch-invariantly when the trainer's
    /// policy does (`model.batch_invariant`): its log-probs then differ from the trainer's in
    /// the last bits (rollout/logp_diff_*), not exactly.
    pub fn check_invariance(&self, trainer_invariant: bool) {
        if !trainer_invariant {
            return;
        }
        for (url, &inv) in self.cfg.urls.iter().zip(&self.invariant) {
            if !inv {
                tracing::warn!(
                    "model.batch_invariant = true but rollout server {url} is not batch-invariant \
                     (start it with `rlvr serve --batch-invariant`): its log-probs will differ \
                     from the trainer's by f32 rounding"
                );
            }
        }
    }

    /// Whether every server is `rlvr serve` (then served samples equal native ones).
    pub fn all_rlvr(&self) -> bool {
        self.rlvr.iter().all(|&r| r)
    }

    /// The version the servers hold, if synced.
    pub fn synced(&self) -> Option<u64> {
        self.synced.lock().ok().and_then(|s| *s)
    }

    /// Writes the policy as version `version` and has every server load it (rank 0's work;
    /// `dir` is the run folder). Older synced folders are removed.
    pub fn sync(&self, policy: &dyn Policy, version: u64, run_dir: &Path) -> Result<()> {
        if self.synced() == Some(version) {
            return Ok(());
        }
        if self.cfg.sync == SyncMode::Distributed {
            self.sync_distributed(policy, version)?;
            if let Ok(mut s) = self.synced.lock() {
                *s = Some(version);
            }
            return Ok(());
        }
        let path = self.write_folder(policy, version, run_dir)?;
        self.load_folder(version, &path)
    }

    /// Loads the folder `path` (version `version`) into every server while it generates:
    /// `/pause_generation` in place, the load, `/continue_generation` (partial rollouts).
    pub fn load_in_flight(&self, version: u64, path: &Path) -> Result<()> {
        for url in &self.cfg.urls {
            post_json(
                &self.agent,
                &format!("{url}/pause_generation"),
                &json!({"mode": "in_place"}),
            )
            .map_err(|e| {
                TrainError::Run(format!(
                    "rollout server {url} cannot pause generation for a partial-rollout weight \
                     update (rollout.partial needs rlvr serve or SGLang): {e}"
                ))
            })?;
        }
        let loaded = self.load_folder(version, path);
        for url in &self.cfg.urls {
            post_json(
                &self.agent,
                &format!("{url}/continue_generation"),
                &json!({}),
            )
            .map_err(|e| {
                TrainError::Run(format!("rollout server {url}: continue_generation: {e}"))
            })?;
        }
        loaded
    }

    /// The folder synced weights are written to.
    fn sync_root(&self, run_dir: &Path) -> PathBuf {
        if self.cfg.sync_dir.is_empty() {
            run_dir.join("rollout-weights")
        } else {
            PathBuf::from(&self.cfg.sync_dir)
        }
    }

    /// Writes the policy (its adapters, for a LoRA run) as version `version` under the sync
    /// folder, atomically; returns the folder's path.
    pub fn write_folder(
        &self,
        policy: &dyn Policy,
        version: u64,
        run_dir: &Path,
    ) -> Result<PathBuf> {
        let root = self.sync_root(run_dir);
        std::fs::create_dir_all(&root)
            .map_err(|e| TrainError::Run(format!("cannot create {}: {e}", root.display())))?;
        let folder = root.join(format!("v{version:06}"));
        if folder.exists() {
            // Left by an earlier incarnation of the run (killed and resumed): written anew.
            std::fs::remove_dir_all(&folder).map_err(|e| {
                TrainError::Run(format!("cannot replace {}: {e}", folder.display()))
            })?;
        }
        let staged = StagedDir::create(&folder, "partial")?;
        policy.save(staged.path())?;
        staged.publish()?;
        Ok(std::fs::canonicalize(&folder).unwrap_or(folder))
    }

    /// Has every server load the folder `path` (version `version`, from
    /// [`ServerEngine::write_folder`]); older versions' folders are then removed.
    pub fn load_folder(&self, version: u64, path: &Path) -> Result<()> {
        for url in &self.cfg.urls {
            if self.adapters && self.cfg.api == ServerApi::Vllm {
                // vLLM keeps a name's first adapter: unload the previous version first (an
                // error here only means none was loaded yet).
                let body = json!({"lora_name": ADAPTER_NAME});
                let _ = post_json(&self.agent, &format!("{url}/v1/unload_lora_adapter"), &body);
            }
            let (endpoint, body) = match (self.cfg.api, self.adapters) {
                (ServerApi::Sglang, true) => (
                    format!("{url}/load_lora_adapter"),
                    json!({"lora_name": ADAPTER_NAME, "lora_path": path}),
                ),
                (ServerApi::Vllm, true) => (
                    format!("{url}/v1/load_lora_adapter"),
                    json!({"lora_name": ADAPTER_NAME, "lora_path": path}),
                ),
                (ServerApi::Sglang, false) => (
                    format!("{url}/update_weights_from_disk"),
                    json!({"model_path": path, "weight_version": version.to_string()}),
                ),
                (ServerApi::Vllm, false) => (
                    format!("{url}/collective_rpc"),
                    json!({"method": "rlvr_load_folder", "args": [path]}),
                ),
            };
            let answer = post_json(&self.agent, &endpoint, &body).map_err(|e| {
                TrainError::Run(format!(
                    "rollout server {url} did not load the weights of step {version}: {e}; \
                     {RESTART_HINT}"
                ))
            })?;
            if answer.get("success").and_then(Value::as_bool) == Some(false) {
                return Err(TrainError::Run(format!(
                    "rollout server {url} refused the weights of step {version}: {}",
                    answer.get("message").and_then(Value::as_str).unwrap_or("")
                )));
            }
            if self.cfg.api == ServerApi::Vllm {
                // vLLM's prefix cache still holds prompt keys and values of the old weights.
                post_json(
                    &self.agent,
                    &format!("{url}/reset_prefix_cache"),
                    &json!({}),
                )
                .map_err(|e| {
                    TrainError::Run(format!(
                        "rollout server {url}: resetting the prefix cache after the weights \
                             of step {version}: {e}"
                    ))
                })?;
            }
        }
        if let Ok(mut s) = self.synced.lock() {
            *s = Some(version);
        }
        // Older versions are no longer served (newer ones may already be written).
        if let Some(root) = path.parent() {
            if let Ok(entries) = std::fs::read_dir(root) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    let older = name
                        .strip_prefix('v')
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|v| v < version);
                    if older {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        Ok(())
    }

    /// Joins the weight-update group with every server (once): the servers are posted
    /// `/init_weights_update_group` while this process serves the store as rank 0.
    fn join_group(&self) -> Result<()> {
        let mut slot = self
            .group
            .lock()
            .map_err(|_| TrainError::Run("the weight group is poisoned".into()))?;
        if slot.is_some() {
            return Ok(());
        }
        let host = self.cfg.sync_host.clone();
        let port = std::net::TcpListener::bind((host.as_str(), 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| TrainError::Run(format!("rollout.sync_host {host}: no free port: {e}")))?;
        let world = 1 + self.cfg.urls.len();
        let env = rlvr_dist::WorldEnv {
            rank: 0,
            world_size: world,
            local_rank: 0,
            master_addr: host.clone(),
            master_port: port,
        };
        let timeout = Duration::from_secs_f64(self.cfg.timeout_s);
        let (group, answers) = std::thread::scope(|s| {
            let posts: Vec<_> = self
                .cfg
                .urls
                .iter()
                .enumerate()
                .map(|(i, url)| {
                    let body = json!({"master_address": host, "master_port": port,
                        "rank_offset": i + 1, "world_size": world, "group_name": WEIGHT_GROUP,
                        "backend": "gloo"});
                    let endpoint = format!("{url}/init_weights_update_group");
                    s.spawn(move || post_json(&self.agent, &endpoint, &body))
                })
                .collect();
            let group = rlvr_dist::C10dGroup::join_prefixed(
                &env,
                timeout,
                &rlvr_dist::Engine::Gloo,
                WEIGHT_GROUP,
            );
            let answers: Vec<_> = posts.into_iter().map(|h| h.join()).collect();
            (group, answers)
        });
        refused_by(
            &self.cfg.urls,
            answers,
            "did not join the weight-update group".into(),
        )?;
        *slot =
            Some(group.map_err(|e| {
                TrainError::Run(format!("the weight-update group did not form: {e}"))
            })?);
        Ok(())
    }

    /// Broadcasts every parameter (by name, in name order) to the servers of the group.
    fn sync_distributed(&self, policy: &dyn Policy, version: u64) -> Result<()> {
        self.join_group()?;
        let mut vars: Vec<(String, tch::Tensor)> =
            policy.var_store().variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let dtype = |t: &tch::Tensor| match t.kind() {
            tch::Kind::BFloat16 => "bfloat16",
            tch::Kind::Half => "float16",
            _ => "float32",
        };
        let body = json!({
            "names": vars.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "dtypes": vars.iter().map(|(_, t)| dtype(t)).collect::<Vec<_>>(),
            "shapes": vars.iter().map(|(_, t)| t.size()).collect::<Vec<_>>(),
            "group_name": WEIGHT_GROUP, "weight_version": version.to_string(),
        });
        let guard = self
            .group
            .lock()
            .map_err(|_| TrainError::Run("the weight group is poisoned".into()))?;
        let Some(group) = guard.as_ref() else {
            return Err(TrainError::Run("no weight-update group".into()));
        };
        let (sent, answers) = std::thread::scope(|s| {
            let posts: Vec<_> = self
                .cfg
                .urls
                .iter()
                .map(|url| {
                    let endpoint = format!("{url}/update_weights_from_distributed");
                    let body = &body;
                    s.spawn(move || post_json(&self.agent, &endpoint, body))
                })
                .collect();
            let sent = (|| -> Result<()> {
                use rlvr_dist::Collective;
                let _g = tch::no_grad_guard();
                for (name, t) in &vars {
                    let mut buf = t.detach().to_device(tch::Device::Cpu).contiguous().copy();
                    group.broadcast(&mut buf, 0).map_err(|e| {
                        TrainError::Run(format!("broadcasting `{name}` to the servers: {e}"))
                    })?;
                }
                Ok(())
            })();
            let answers: Vec<_> = posts.into_iter().map(|h| h.join()).collect();
            (sent, answers)
        });
        refused_by(
            &self.cfg.urls,
            answers,
            format!("did not load the weights of step {version}"),
        )?;
        sent
    }

    /// `n` samples of each prompt; sample `j` of prompt `i` draws from stream
    /// `sampling.first_stream + i·n + j` on `rlvr serve`. Returns them prompt-major.
    pub fn generate(
        &self,
        prompts: &[Vec<i64>],
        n: usize,
        sampling: &SamplingConfig,
        stop: &[i64],
    ) -> Result<Vec<ServedSample>> {
        let mut out: Vec<Option<Result<Vec<ServedSample>>>> = Vec::new();
        out.resize_with(prompts.len(), || None);
        let width = self.cfg.max_in_flight.max(1);
        for (c, chunk) in prompts.chunks(width).enumerate() {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .map(|(k, p)| {
                        let i = c * width + k;
                        s.spawn(move || self.request(p, i, n, sampling, stop))
                    })
                    .collect();
                for (k, h) in handles.into_iter().enumerate() {
                    out[c * width + k] = Some(h.join().unwrap_or_else(|_| {
                        Err(TrainError::Run("a rollout request thread panicked".into()))
                    }));
                }
            });
        }
        let mut samples = Vec::with_capacity(prompts.len() * n);
        for r in out.into_iter().flatten() {
            samples.extend(r?);
        }
        Ok(samples)
    }

    /// One prompt's samples: the server with the fewest requests outstanding, then one retry
    /// on the next.
    fn request(
        &self,
        prompt: &[i64],
        i: usize,
        n: usize,
        sampling: &SamplingConfig,
        stop: &[i64],
    ) -> Result<Vec<ServedSample>> {
        let mut tried: Vec<usize> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        for _ in 0..2.min(self.cfg.urls.len()).max(1) {
            let Some(s) = (0..self.cfg.urls.len())
                .filter(|s| !tried.contains(s))
                .min_by_key(|&s| self.outstanding[s].load(Ordering::SeqCst))
            else {
                break;
            };
            tried.push(s);
            self.outstanding[s].fetch_add(1, Ordering::SeqCst);
            let r = self.request_on(s, prompt, i, n, sampling, stop);
            self.outstanding[s].fetch_sub(1, Ordering::SeqCst);
            match r {
                Ok(samples) => return Ok(samples),
                Err(e) => errors.push(format!("{}: {e}", self.cfg.urls[s])),
            }
        }
        Err(TrainError::Run(format!(
            "rollout server did not answer ({}); {RESTART_HINT}",
            errors.join("; then ")
        )))
    }

    fn request_on(
        &self,
        s: usize,
        prompt: &[i64],
        i: usize,
        n: usize,
        sampling: &SamplingConfig,
        stop: &[i64],
    ) -> std::result::Result<Vec<ServedSample>, String> {
        let url = &self.cfg.urls[s];
        let top_k = if sampling.top_k > 0 {
            sampling.top_k
        } else {
            -1
        };
        let stream = sampling.first_stream + (i * n) as u64;
        let fallback = self.synced().unwrap_or(0);
        match self.cfg.api {
            ServerApi::Sglang => {
                let mut params = json!({
                    "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": top_k,
                    "max_new_tokens": sampling.max_new_tokens, "stop_token_ids": stop, "n": n,
                    "ignore_eos": true,
                    // One seed per prompt on other engines; rlvr serve takes the row streams.
                    "sampling_seed": if self.rlvr[s] { sampling.seed } else {
                        sampling.seed.wrapping_add(stream) },
                });
                if self.rlvr[s] {
                    params["rlvr_stream"] = json!(stream);
                }
                let mut body = json!({"input_ids": prompt, "sampling_params": params,
                                      "return_logprob": true});
                if self.adapters {
                    body["lora_path"] = json!(ADAPTER_NAME);
                }
                let answer = post_json(&self.agent, &format!("{url}/generate"), &body)?;
                let items = match answer {
                    Value::Array(a) => a,
                    one => vec![one],
                };
                items.iter().map(|v| sglang_sample(v, fallback)).collect()
            }
            ServerApi::Vllm => {
                let model = match self.adapters {
                    true => ADAPTER_NAME,
                    false => self.model_names[s].as_str(),
                };
                let body = json!({
                    "model": model, "prompt": prompt,
                    "max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
                    "top_p": sampling.top_p, "top_k": top_k, "n": n, "logprobs": 0,
                    "stop_token_ids": stop, "ignore_eos": true,
                    "return_tokens_as_token_ids": true, "skip_special_tokens": false,
                });
                let answer = post_json(&self.agent, &format!("{url}/v1/completions"), &body)?;
                let choices = answer
                    .get("choices")
                    .and_then(Value::as_array)
                    .ok_or("the answer has no `choices`")?;
                choices.iter().map(|c| vllm_sample(c, fallback)).collect()
            }
        }
    }
}

/// A `/generate` answer item as a sample.
fn sglang_sample(v: &Value, fallback: u64) -> std::result::Result<ServedSample, String> {
    let tokens: Vec<i64> = v
        .get("output_ids")
        .and_then(Value::as_array)
        .ok_or("the answer has no `output_ids`")?
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let meta = v.get("meta_info").ok_or("the answer has no `meta_info`")?;
    let logprobs: Vec<f64> = meta
        .get("output_token_logprobs")
        .and_then(Value::as_array)
        .ok_or("the answer has no `meta_info.output_token_logprobs`")?
        .iter()
        .filter_map(|e| e.get(0).and_then(Value::as_f64))
        .collect();
    if logprobs.len() != tokens.len() {
        return Err(format!(
            "{} log-probs for {} tokens",
            logprobs.len(),
            tokens.len()
        ));
    }
    let finish = match meta.pointer("/finish_reason/type").and_then(Value::as_str) {
        Some("stop") => FinishReason::Stop,
        _ => FinishReason::Length,
    };
    let version = meta
        .get("weight_version")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(fallback);
    // rlvr serve's per-token versions (partial rollouts); the sample is as old as its oldest.
    let token_versions: Vec<u64> = meta
        .get("output_token_weight_versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .map(|v| v.as_str().and_then(|s| s.parse().ok()).unwrap_or(version))
                .collect()
        })
        .filter(|vs: &Vec<u64>| vs.len() == tokens.len())
        .unwrap_or_default();
    let version = token_versions.iter().copied().min().unwrap_or(version);
    Ok(ServedSample {
        tokens,
        logprobs,
        finish,
        version,
        token_versions,
    })
}

/// A `/v1/completions` choice as a sample (token ids from `token_ids`, else from
/// `token_id:N` names).
fn vllm_sample(c: &Value, fallback: u64) -> std::result::Result<ServedSample, String> {
    let lp = c.get("logprobs").ok_or("the choice has no `logprobs`")?;
    let logprobs: Vec<f64> = lp
        .get("token_logprobs")
        .and_then(Value::as_array)
        .ok_or("no `logprobs.token_logprobs`")?
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect();
    let tokens: Vec<i64> = match c.get("token_ids").and_then(Value::as_array) {
        Some(ids) => ids.iter().filter_map(Value::as_i64).collect(),
        None => lp
            .get("tokens")
            .and_then(Value::as_array)
            .ok_or("no `logprobs.tokens`")?
            .iter()
            .filter_map(|t| t.as_str()?.strip_prefix("token_id:")?.parse().ok())
            .collect(),
    };
    if logprobs.len() != tokens.len() {
        return Err(format!(
            "{} log-probs for {} tokens",
            logprobs.len(),
            tokens.len()
        ));
    }
    let finish = match c.get("finish_reason").and_then(Value::as_str) {
        Some("stop") => FinishReason::Stop,
        _ => FinishReason::Length,
    };
    Ok(ServedSample {
        tokens,
        logprobs,
        finish,
        version: fallback,
        token_versions: Vec::new(),
    })
}

/// The first server whose answer (of a request made in a thread) is a failure, as an error
/// "rollout server URL WHAT: WHY".
fn refused_by(
    urls: &[String],
    answers: Vec<std::thread::Result<std::result::Result<Value, String>>>,
    what: String,
) -> Result<()> {
    for (url, a) in urls.iter().zip(answers) {
        let refused = match a {
            Ok(Ok(v)) if v.get("success").and_then(Value::as_bool) != Some(false) => None,
            Ok(Ok(v)) => Some(v.to_string()),
            Ok(Err(e)) => Some(e),
            Err(_) => Some("the request thread panicked".into()),
        };
        if let Some(why) = refused {
            return Err(TrainError::Run(format!(
                "rollout server {url} {what}: {why}; {RESTART_HINT}"
            )));
        }
    }
    Ok(())
}

fn get_json(agent: &ureq::Agent, url: &str) -> std::result::Result<Value, String> {
    answer(agent.get(url).call())
}

fn post_json(agent: &ureq::Agent, url: &str, body: &Value) -> std::result::Result<Value, String> {
    answer(agent.post(url).send_json(body))
}

fn answer(
    r: std::result::Result<ureq::Response, ureq::Error>,
) -> std::result::Result<Value, String> {
    match r {
        Ok(resp) => resp
            .into_json::<Value>()
            .map_err(|e| format!("unreadable answer: {e}")),
        Err(ureq::Error::Status(code, resp)) => {
            let text = resp.into_string().unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .or_else(|| v.get("message"))
                        .and_then(Value::as_str)
                        .map(String::from)
                })
                .unwrap_or(text);
            Err(format!("HTTP {code}: {message}"))
        }
        Err(ureq::Error::Transport(t)) => Err(rlvr_rewards::programs::transport_error(&t)),
    }
}

/// Points a run at other rollout servers before `--resume` (servers are where the run
/// generates, not what it trains: the run continues exactly): rewrites `rollout.urls` in the
/// run's `config.toml` atomically and records the change in `history.jsonl`.
pub fn repoint_run(dir: &Path, urls: &[String]) -> Result<()> {
    let path = dir.join("config.toml");
    if !path.is_file() {
        config_bail!(
            "--resume {}: not a run folder (no config.toml)",
            dir.display()
        );
    }
    // A live run (locked by its process) is not changed under it.
    let _lock = FolderLock::acquire(dir, "run")?;
    let mut doc = crate::config::read_document(&path)?;
    let old = doc
        .get("rollout")
        .and_then(|r| r.get("urls"))
        .cloned()
        .unwrap_or(toml::Value::Array(Vec::new()));
    let new = toml::Value::Array(
        urls.iter()
            .map(|u| toml::Value::String(u.clone()))
            .collect(),
    );
    crate::config::set(&mut doc, "rollout.urls", new)?;
    let cfg = crate::config::RunConfig::from_document(doc.clone())?;
    if cfg.rollout.engine != EngineKind::Server {
        config_bail!(
            "--rollout-urls: the run {} generates in-process (rollout.engine = \"native\")",
            dir.display()
        );
    }
    rlvr_core::atomic::write_file(&path, toml::to_string(&doc)?)
        .map_err(|e| TrainError::Run(e.to_string()))?;
    crate::trainer::append_history(
        dir,
        &json!({"event": "rollout_urls", "from": old.to_string(), "to": urls}),
    )
}
