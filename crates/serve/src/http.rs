//! The routes: request validation (4xx with a message), the queue bound (503), and the
//! translation between the JSON bodies of [`crate::api`] and the model thread's jobs.

use crate::api::{
    CompletionRequest, FinishReasonJson, GenerateOutput, GenerateRequest, MetaInfo, ModelInfo,
    PauseGeneration, Prompts, SamplingParams, Success, UpdateFromDisk,
};
use crate::scheduler::{Generated, Job, Prompt};
use crate::App;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rlvr_core::{FinishReason, SamplingConfig, TextCodec};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

type Shared = State<Arc<App>>;

/// The server's routes.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/health_generate", get(|| async { StatusCode::OK }))
        .route("/get_model_info", get(model_info))
        .route(
            "/flush_cache",
            post(|| async { StatusCode::OK }).get(|| async { StatusCode::OK }),
        )
        .route("/generate", post(generate))
        .route("/update_weights_from_disk", post(update_from_disk))
        .route("/pause_generation", post(pause))
        .route("/continue_generation", post(resume))
        .route("/load_lora_adapter", post(crate::adapters::load))
        .route("/v1/load_lora_adapter", post(crate::adapters::load))
        .route("/unload_lora_adapter", post(crate::adapters::unload))
        .route("/v1/unload_lora_adapter", post(crate::adapters::unload))
        .route(
            "/init_weights_update_group",
            post(crate::weight_group::init_group),
        )
        .route(
            "/update_weights_from_distributed",
            post(crate::weight_group::update_from_group),
        )
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .with_state(app)
}

/// A refused request: its status and message, answered as `{"error": {"message", "type",
/// "code"}}` (OpenAI's shape, which SGLang's clients also read).
pub(crate) struct Reject {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let kind = if self.status == StatusCode::SERVICE_UNAVAILABLE {
            "ServiceUnavailableError"
        } else if self.status.is_client_error() {
            "BadRequestError"
        } else {
            "InternalServerError"
        };
        let body = json!({"error": {"message": self.message, "type": kind,
                                    "code": self.status.as_u16()}});
        (self.status, Json(body)).into_response()
    }
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Reject {
    Reject {
        status,
        message: message.into(),
    }
}

/// The answer when the model thread is gone.
pub(crate) fn stopped() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the model thread has stopped",
    )
    .into_response()
}

pub(crate) fn bad(message: impl Into<String>) -> Reject {
    error(StatusCode::BAD_REQUEST, message)
}

/// Parses a JSON body, naming the field and the problem.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Reject> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid request body: {e}")))
}

async fn model_info(State(app): Shared) -> Json<ModelInfo> {
    Json(ModelInfo {
        model_path: app.opts.model.display().to_string(),
        tokenizer_path: app
            .tokenizer
            .as_ref()
            .map(|_| app.opts.model.display().to_string()),
        is_generation: true,
        weight_version: version(&app),
        engine: "rlvr".into(),
        vocab_size: app.vocab_size,
        max_positions: app.max_positions,
        max_running: app.opts.max_running,
        batch_invariant: app.opts.batch_invariant,
    })
}

async fn models(State(app): Shared) -> Json<Value> {
    let id = app.opts.model.display().to_string();
    Json(
        json!({"object": "list", "data": [{"id": id, "object": "model", "owned_by": "rlvr",
        "max_model_len": app.max_positions}]}),
    )
}

fn version(app: &App) -> String {
    app.shared
        .version
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default()
}

/// Token-id prompts of a request: ids as given, or text through the tokenizer.
fn prompt_ids(app: &App, prompts: &Prompts) -> Result<Vec<Vec<i64>>, Reject> {
    let encode = |t: &str| -> Result<Vec<i64>, Reject> {
        let Some(tok) = &app.tokenizer else {
            return Err(bad(format!(
                "text prompts need a tokenizer, and {} has no tokenizer.json; send token ids \
                 (`input_ids`, or a list of ids as `prompt`)",
                app.opts.model.display()
            )));
        };
        tok.encode(t)
            .map_err(|e| bad(format!("cannot tokenize the prompt: {e}")))
    };
    let ids = match prompts {
        Prompts::Ids(ids) => vec![ids.clone()],
        Prompts::IdBatch(b) => b.clone(),
        Prompts::Text(t) => vec![encode(t)?],
        Prompts::TextBatch(ts) => ts.iter().map(|t| encode(t)).collect::<Result<_, _>>()?,
    };
    if ids.is_empty() {
        return Err(bad("the request has no prompt"));
    }
    for (i, p) in ids.iter().enumerate() {
        if p.is_empty() {
            return Err(bad(format!("prompt {i} is empty")));
        }
        if let Some(t) = p.iter().find(|&&t| t < 0 || t >= app.vocab_size) {
            return Err(bad(format!(
                "prompt {i}: token id {t} is outside the vocabulary 0..{}",
                app.vocab_size
            )));
        }
    }
    Ok(ids)
}

/// The checked sampling of a request, and its stop ids.
fn sampling(app: &App, p: &SamplingParams) -> Result<(SamplingConfig, Vec<i64>), Reject> {
    if !(p.temperature.is_finite() && p.temperature >= 0.0) {
        return Err(bad(format!(
            "temperature = {} must be a number ≥ 0",
            p.temperature
        )));
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return Err(bad(format!("top_p = {} must be in (0, 1]", p.top_p)));
    }
    if p.top_k < -1 {
        return Err(bad(format!("top_k = {} must be -1 (all) or ≥ 0", p.top_k)));
    }
    if p.max_new_tokens < 0 {
        return Err(bad(format!(
            "max_new_tokens = {} must be ≥ 0",
            p.max_new_tokens
        )));
    }
    if p.n == 0 || p.n > app.opts.max_running {
        return Err(bad(format!(
            "n = {} must be in 1..={} (the server's --max-running)",
            p.n, app.opts.max_running
        )));
    }
    let unsupported = [
        ("min_new_tokens", p.min_new_tokens != 0, "0"),
        ("frequency_penalty", p.frequency_penalty != 0.0, "0"),
        ("presence_penalty", p.presence_penalty != 0.0, "0"),
        ("repetition_penalty", p.repetition_penalty != 1.0, "1"),
    ];
    if let Some((name, _, only)) = unsupported.iter().find(|(_, set, _)| *set) {
        return Err(bad(format!(
            "{name} is not supported by rlvr serve (only {only})"
        )));
    }
    let stop_strings = match &p.stop {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    if stop_strings {
        return Err(bad(
            "stop strings are not supported by rlvr serve; use stop_token_ids",
        ));
    }
    if let Some(t) = p
        .stop_token_ids
        .iter()
        .find(|&&t| t < 0 || t >= app.vocab_size)
    {
        return Err(bad(format!(
            "stop token id {t} is outside the vocabulary 0..{}",
            app.vocab_size
        )));
    }
    let seed = p
        .sampling_seed
        .unwrap_or_else(|| app.next_seed.fetch_add(1, Ordering::Relaxed) as u64);
    let mut stop = p.stop_token_ids.clone();
    if !p.ignore_eos {
        stop.extend(&app.eos);
    }
    Ok((
        SamplingConfig {
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k.max(0),
            max_new_tokens: p.max_new_tokens,
            seed,
            first_stream: p.rlvr_stream,
        },
        stop,
    ))
}

/// Queues a generation job, answering 503 beyond the queue bound.
async fn submit(app: &App, prompts: Vec<Prompt>) -> Result<Generated, Reject> {
    let queued = app.shared.pending.fetch_add(1, Ordering::SeqCst);
    if queued >= app.opts.max_queue {
        app.shared.pending.fetch_sub(1, Ordering::SeqCst);
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server is full: {queued} requests queued or running (--max-queue {}); \
                 retry later",
                app.opts.max_queue
            ),
        ));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if app.jobs.send(Job::Generate { prompts, reply: tx }).is_err() {
        app.shared.pending.fetch_sub(1, Ordering::SeqCst);
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model thread has stopped",
        ));
    }
    match rx.await {
        Ok(Ok(g)) => Ok(g),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model thread has stopped",
        )),
    }
}

/// One job prompt per prompt, `n` samples each; prompt `i` of a batch continues the streams
/// after prompt `i − 1`'s samples.
fn prompt_jobs(ids: &[Vec<i64>], n: usize, cfg: &SamplingConfig, stop: &[i64]) -> Vec<Prompt> {
    ids.iter()
        .enumerate()
        .map(|(i, p)| Prompt {
            ids: p.clone(),
            n,
            sampling: SamplingConfig {
                first_stream: cfg.first_stream + (i * n) as u64,
                ..cfg.clone()
            },
            stop: stop.to_vec(),
        })
        .collect()
}

/// Checks that prompt + response fit the model's context.
fn fits(app: &App, ids: &[Vec<i64>], max_new: i64) -> Result<(), Reject> {
    if let Some((i, p)) = ids
        .iter()
        .enumerate()
        .find(|(_, p)| p.len() as i64 + max_new > app.max_positions)
    {
        return Err(bad(format!(
            "prompt {i} has {} tokens; with {max_new} new tokens it exceeds the model's context \
             of {} positions",
            p.len(),
            app.max_positions
        )));
    }
    Ok(())
}

fn decode(app: &App, tokens: &[i64], finish: FinishReason) -> String {
    let Some(tok) = &app.tokenizer else {
        return String::new();
    };
    let end = match finish {
        FinishReason::Stop => tokens.len().saturating_sub(1),
        FinishReason::Length => tokens.len(),
    };
    tok.decode(&tokens[..end]).unwrap_or_default()
}

async fn generate(State(app): Shared, body: Bytes) -> Response {
    match generate_inner(&app, &body).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

async fn generate_inner(app: &App, body: &Bytes) -> Result<Response, Reject> {
    let req: GenerateRequest = parse(body)?;
    if req.stream {
        return Err(bad(
            "streaming is not supported by rlvr serve; send \"stream\": false",
        ));
    }
    let prompts = match (&req.input_ids, &req.text) {
        (Some(ids), None) => ids,
        (None, Some(text)) => text,
        _ => return Err(bad("give exactly one of `text` and `input_ids`")),
    };
    crate::adapters::check_request(app, req.lora_path.as_deref(), "lora_path")?;
    let ids = prompt_ids(app, prompts)?;
    let (cfg, stop) = sampling(app, &req.sampling_params)?;
    fits(app, &ids, cfg.max_new_tokens)?;
    let n = req.sampling_params.n;
    let single =
        ids.len() == 1 && n == 1 && !matches!(prompts, Prompts::IdBatch(_) | Prompts::TextBatch(_));
    let generated = submit(app, prompt_jobs(&ids, n, &cfg, &stop)).await?;
    let current = version(app);
    let rid = req.rid.clone().unwrap_or(Value::Null);
    let outputs: Vec<GenerateOutput> = generated
        .samples
        .into_iter()
        .zip(generated.versions)
        .enumerate()
        .map(|(k, (s, versions))| {
            let finish_reason = match (s.finish, s.tokens.last()) {
                (FinishReason::Stop, Some(&t)) => FinishReasonJson::Stop { matched: t },
                _ => FinishReasonJson::Length {
                    length: s.tokens.len(),
                },
            };
            GenerateOutput {
                text: decode(app, &s.tokens, s.finish),
                meta_info: MetaInfo {
                    id: rid.clone(),
                    finish_reason,
                    prompt_tokens: ids[k / n].len(),
                    completion_tokens: s.tokens.len(),
                    // The version its first token came from (the oldest).
                    weight_version: versions.first().unwrap_or(&current).clone(),
                    output_token_logprobs: req.return_logprob.then(|| {
                        s.logprobs
                            .iter()
                            .zip(&s.tokens)
                            .map(|(&l, &t)| (l, t, None))
                            .collect()
                    }),
                    output_token_weight_versions: req.return_logprob.then_some(versions),
                },
                output_ids: s.tokens,
            }
        })
        .collect();
    Ok(if single {
        Json(&outputs[0]).into_response()
    } else {
        Json(outputs).into_response()
    })
}

async fn update_from_disk(State(app): Shared, body: Bytes) -> Response {
    let req: UpdateFromDisk = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if req.load_format.as_deref().is_some_and(|f| f != "auto") {
        return bad("load_format: only \"auto\" (safetensors) is supported").into_response();
    }
    let path = std::path::PathBuf::from(&req.model_path);
    if !path.is_dir() {
        let message = format!("model_path {} is not a folder", path.display());
        return answer(Err(message));
    }
    let version = req.weight_version.clone();
    weight_job(&app, |reply| Job::LoadFromDisk {
        path,
        version,
        reply,
    })
    .await
}

/// `POST /pause_generation` (SGLang's): mode `in_place` only — the running samples keep their
/// caches and wait; weight updates then load at once; `/continue_generation` resumes.
async fn pause(State(app): Shared, body: Bytes) -> Response {
    let req: PauseGeneration = if body.is_empty() {
        PauseGeneration::default()
    } else {
        match parse(&body) {
            Ok(r) => r,
            Err(r) => return r.into_response(),
        }
    };
    match req.mode.as_deref() {
        Some("in_place") => weight_job(&app, |reply| Job::Pause { reply }).await,
        other => bad(format!(
            "mode {other:?}: rlvr serve pauses in place only (\"mode\": \"in_place\"); \
             abort and retract are not supported"
        ))
        .into_response(),
    }
}

/// `POST /continue_generation`: decoding resumes after `/pause_generation`.
async fn resume(State(app): Shared) -> Response {
    weight_job(&app, |reply| Job::Continue { reply }).await
}

/// `{success, message}` (SGLang's answer to weight updates): 200, or 400 when it failed.
pub(crate) fn answer(result: Result<String, String>) -> Response {
    let (status, success, message) = match result {
        Ok(m) => (StatusCode::OK, true, m),
        Err(m) => (StatusCode::BAD_REQUEST, false, m),
    };
    (status, Json(Success { success, message })).into_response()
}

/// Queues a weight job (it runs when nothing is generating) and answers its outcome.
pub(crate) async fn weight_job(
    app: &App,
    job: impl FnOnce(tokio::sync::oneshot::Sender<Result<String, String>>) -> Job,
) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.shared.pending.fetch_add(1, Ordering::SeqCst);
    if app.jobs.send(job(tx)).is_err() {
        app.shared.pending.fetch_sub(1, Ordering::SeqCst);
        return stopped();
    }
    match rx.await {
        Ok(r) => answer(r),
        Err(_) => stopped(),
    }
}

async fn completions(State(app): Shared, body: Bytes) -> Response {
    match completions_inner(&app, &body).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

async fn completions_inner(app: &App, body: &Bytes) -> Result<Response, Reject> {
    let req: CompletionRequest = parse(body)?;
    if req.stream {
        return Err(bad(
            "streaming is not supported by rlvr serve; send \"stream\": false",
        ));
    }
    if req.logprobs.is_some_and(|k| k > 0) {
        return Err(bad(
            "logprobs: only 0 (the sampled token's log-prob) is served; top alternatives are not",
        ));
    }
    let params = SamplingParams {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        max_new_tokens: req.max_tokens,
        stop_token_ids: req.stop_token_ids.clone(),
        n: req.n,
        ignore_eos: req.ignore_eos,
        sampling_seed: req.seed,
        rlvr_stream: req.rlvr_stream,
        ..SamplingParams::default()
    };
    // vLLM names the adapter of a request in `model`; the served folder's name means the base.
    let base = app.opts.model.display().to_string();
    let adapter = req.model.as_deref().filter(|m| *m != base);
    crate::adapters::check_request(app, adapter, "model")?;
    let ids = prompt_ids(app, &req.prompt)?;
    let (cfg, stop) = sampling(app, &params)?;
    fits(app, &ids, cfg.max_new_tokens)?;
    let n = req.n;
    let samples = submit(app, prompt_jobs(&ids, n, &cfg, &stop))
        .await?
        .samples;
    let completion_tokens: usize = samples.iter().map(|s| s.tokens.len()).sum();
    let prompt_tokens: usize = ids.iter().map(Vec::len).sum::<usize>() * n;
    let choices: Vec<Value> = samples
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let names: Vec<String> = s
                .tokens
                .iter()
                .map(|t| match (&app.tokenizer, req.return_tokens_as_token_ids) {
                    (Some(tok), false) => tok.decode(&[*t]).unwrap_or_default(),
                    _ => format!("token_id:{t}"),
                })
                .collect();
            let logprobs = req.logprobs.map(|_| {
                json!({"tokens": names, "token_logprobs": s.logprobs, "top_logprobs": null,
                       "text_offset": []})
            });
            let finish = match s.finish {
                FinishReason::Stop => "stop",
                FinishReason::Length => "length",
            };
            json!({"index": k, "text": decode(app, &s.tokens, s.finish), "logprobs": logprobs,
                   "finish_reason": finish, "token_ids": s.tokens,
                   "prompt_token_ids": ids[k / n]})
        })
        .collect();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(Json(json!({
        "id": format!("cmpl-{created}-{}", app.next_seed.fetch_add(1, Ordering::Relaxed)),
        "object": "text_completion",
        "created": created,
        "model": req.model.unwrap_or_else(|| app.opts.model.display().to_string()),
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }))
    .into_response())
}
