//! LoRA adapters on the served base model (SGLang's `/load_lora_adapter`, vLLM's
//! `/v1/load_lora_adapter`): a PEFT adapter folder is attached to the model and applied to every
//! request from then on — the adapter-only weight sync of LoRA training, where the base stays
//! and only the adapters change. One adapter at a time: a request names it (`lora_path` in
//! `/generate`, `model` in `/v1/completions`) and is refused while another or none is loaded, so
//! no request is silently answered by the wrong weights.

use crate::api::{LoadLora, UnloadLora};
use crate::http::{bad, parse, Reject};
use crate::scheduler::Job;
use crate::App;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use rlvr_models::lora;
use std::sync::Arc;

/// Checks that a request names the loaded adapter (or none when none is loaded).
pub(crate) fn check_request(app: &App, named: Option<&str>, field: &str) -> Result<(), Reject> {
    let loaded = app.shared.adapter.lock().ok().and_then(|a| a.clone());
    match (named, loaded) {
        (None, None) => Ok(()),
        (Some(n), Some(l)) if n == l => Ok(()),
        (Some(n), None) => Err(bad(format!(
            "{field} = {n:?}: no LoRA adapter is loaded (POST /load_lora_adapter first)"
        ))),
        (Some(n), Some(l)) => Err(bad(format!(
            "{field} = {n:?}: the loaded adapter is {l:?} (one adapter at a time)"
        ))),
        (None, Some(l)) => Err(bad(format!(
            "adapter {l:?} is loaded and applies to every request: name it ({field} = {l:?}) \
             or unload it"
        ))),
    }
}

/// Runs a weight update on the model thread and answers SGLang's `{success, message}`.
async fn run(app: &App, update: crate::scheduler::WeightUpdate) -> Response {
    crate::http::weight_job(app, |reply| Job::Exclusive {
        update,
        version: None,
        reply,
    })
    .await
}

pub(crate) async fn load(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: LoadLora = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let dir = std::path::PathBuf::from(&req.lora_path);
    let shared = app.shared.clone();
    let name = req.lora_name.clone();
    let update = Box::new(move |model: &mut rlvr_models::HfModel| {
        let fail = |e: rlvr_models::ModelError| format!("cannot load {}: {e}", dir.display());
        let spec = lora::read_adapter_config(&dir)
            .and_then(|c| c.spec())
            .map_err(fail)?;
        match &model.adapters {
            None => {
                let kind = model.vs.kind();
                model.attach_adapters(&spec, kind).map_err(fail)?;
            }
            Some(s) if (s.rank, s.scale, &s.targets) == (spec.rank, spec.scale, &spec.targets) => {}
            Some(s) => {
                return Err(format!(
                    "{}: rank {} targets {:?}, but the server holds adapters of rank {} targets \
                     {:?}; restart the server for another adapter shape",
                    dir.display(),
                    spec.rank,
                    spec.targets,
                    s.rank,
                    s.targets
                ))
            }
        }
        lora::load_adapter(&mut model.vs, &dir).map_err(fail)?;
        model.model.set_adapters_enabled(true);
        if let Ok(mut a) = shared.adapter.lock() {
            *a = Some(name.clone());
        }
        Ok(format!(
            "loaded LoRA adapter {name:?} from {}",
            dir.display()
        ))
    });
    run(&app, update).await
}

pub(crate) async fn unload(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: UnloadLora = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let loaded = app.shared.adapter.lock().ok().and_then(|a| a.clone());
    if loaded.as_deref() != Some(req.lora_name.as_str()) {
        return bad(format!(
            "adapter {:?} is not loaded (loaded: {loaded:?})",
            req.lora_name
        ))
        .into_response();
    }
    let shared = app.shared.clone();
    let update = Box::new(move |model: &mut rlvr_models::HfModel| {
        model.model.set_adapters_enabled(false);
        if let Ok(mut a) = shared.adapter.lock() {
            *a = None;
        }
        Ok(format!("unloaded LoRA adapter {:?}", req.lora_name))
    });
    run(&app, update).await
}
