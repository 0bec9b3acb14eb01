//! Weight updates over a c10d process group, as SGLang does them: `/init_weights_update_group`
//! joins a group whose rank 0 is the trainer (TCPStore at `master_address:master_port`, keys
//! under `PrefixStore(group_name)`, Gloo on CPU), and `/update_weights_from_distributed` receives
//! one broadcast from rank 0 per named tensor, in the order given, then loads them all at once
//! (nothing changes if any is missing or misshapen) once no request is generating.

use crate::api::{InitGroup, UpdateFromDistributed};
use crate::http::{answer, bad, parse, weight_job};
use crate::scheduler::Job;
use crate::App;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use rlvr_dist::{C10dGroup, Collective, Engine, WorldEnv};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// How long joining or a broadcast may wait for the other ranks.
const GROUP_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) async fn init_group(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: InitGroup = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if req.backend != "gloo" {
        return bad(format!(
            "backend {:?}: rlvr serve joins weight-update groups over gloo (CPU) here; nccl \
             groups need the NCCL shim (docs/distributed.md)",
            req.backend
        ))
        .into_response();
    }
    if req.rank_offset == 0 || req.rank_offset >= req.world_size {
        return bad(format!(
            "rank_offset {} must be in 1..{} (rank 0 is the trainer)",
            req.rank_offset, req.world_size
        ))
        .into_response();
    }
    let env = WorldEnv {
        rank: req.rank_offset,
        world_size: req.world_size,
        local_rank: 0,
        master_addr: req.master_address.clone(),
        master_port: req.master_port,
    };
    let name = req.group_name.clone();
    let joined = tokio::task::spawn_blocking(move || {
        C10dGroup::join_prefixed(&env, GROUP_TIMEOUT, &Engine::Gloo, &name)
    })
    .await;
    let result = match joined {
        Ok(Ok(group)) => {
            if let Ok(mut groups) = app.groups.lock() {
                groups.insert(req.group_name.clone(), Arc::new(Mutex::new(group)));
            }
            Ok(format!(
                "joined weight-update group {:?} as rank {} of {}",
                req.group_name, req.rank_offset, req.world_size
            ))
        }
        Ok(Err(e)) => Err(format!("cannot join group {:?}: {e}", req.group_name)),
        Err(e) => Err(format!("cannot join group {:?}: {e}", req.group_name)),
    };
    answer(result)
}

/// The libtorch kind of a torch dtype name.
fn kind(name: &str) -> Option<Kind> {
    match name.trim_start_matches("torch.") {
        "float32" | "float" => Some(Kind::Float),
        "bfloat16" => Some(Kind::BFloat16),
        "float16" | "half" => Some(Kind::Half),
        _ => None,
    }
}

pub(crate) async fn update_from_group(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: UpdateFromDistributed = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let name = req.group_name.clone().unwrap_or_default();
    let group = app
        .groups
        .lock()
        .ok()
        .and_then(|g| g.get(&name).cloned().or_else(|| g.values().next().cloned()));
    let Some(group) = group else {
        return bad("no weight-update group: POST /init_weights_update_group first")
            .into_response();
    };
    if req.names.len() != req.dtypes.len() || req.names.len() != req.shapes.len() {
        return bad(format!(
            "names ({}), dtypes ({}) and shapes ({}) must have one entry per tensor",
            req.names.len(),
            req.dtypes.len(),
            req.shapes.len()
        ))
        .into_response();
    }
    let mut kinds = Vec::with_capacity(req.dtypes.len());
    for d in &req.dtypes {
        match kind(d) {
            Some(k) => kinds.push(k),
            None => {
                return bad(format!("dtype {d:?}: only float32, bfloat16 and float16"))
                    .into_response()
            }
        }
    }
    let specs: Vec<(String, Kind, Vec<i64>)> = req
        .names
        .into_iter()
        .zip(kinds)
        .zip(req.shapes)
        .map(|((n, k), s)| (n, k, s))
        .collect();
    let update = Box::new(move |model: &mut rlvr_models::HfModel| {
        let group = group
            .lock()
            .map_err(|_| "the weight group is poisoned".to_string())?;
        // Receive every broadcast first (the trainer sends them all), then load all at once.
        let mut received = HashMap::with_capacity(specs.len());
        for (name, kind, shape) in &specs {
            let mut t = Tensor::zeros(shape.as_slice(), (*kind, Device::Cpu));
            group
                .broadcast(&mut t, 0)
                .map_err(|e| format!("receiving `{name}`: {e}"))?;
            received.insert(name.clone(), t);
        }
        rlvr_models::checkpoint::load_named(&mut model.vs, &received)
            .map_err(|e| format!("cannot load the received weights: {e}"))?;
        Ok(format!("loaded {} tensors from the group", specs.len()))
    });
    let version = req.weight_version.clone();
    weight_job(&app, |reply| Job::Exclusive {
        update,
        version,
        reply,
    })
    .await
}
