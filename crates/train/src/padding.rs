//! Token ids of prompts and responses as padded batches.

use crate::error::Result;
use rlvr_core::TextCodec;
use tch::{Device, Tensor};

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
