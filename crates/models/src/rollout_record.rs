//! A generation's forward passes, kept for the update (docs/performance.md, "the update from
//! the rollout's activations"). The checkpointed update at the weights that generated a batch
//! runs the decoder over the same tokens again before its backward; the rollout already ran
//! every layer on every position of every row (prefill and decode steps, with the KV cache).
//! Recording what the update's backward reads of each layer ([`LayerActivations`]: the input,
//! the q/k/v, gate and up projections, the attention output and log-sum-exp, the post-attention
//! residual) and the final residual stream lets the update skip its forward through the decoder
//! ([`crate::backward::recorded_loss_backward`]): the same quantities, computed by the rollout's
//! kernels (packed products, the decode step's attention) instead of the update's, so the
//! gradients equal the recomputed ones up to float rounding, not bit for bit.
//!
//! The record is laid out as the update's batch is: row `r` of the generation, prompt left-padded
//! to the generation's prompt width `P`, response token `s` in column `P + s`. Columns nothing
//! wrote (padding, the last token of each response, which no step fed back) hold zeros, which the
//! backward reads only with zero gradient.

use crate::error::{ModelError, Result};
use crate::transformer::{LayerActivations, SavedAttention, Transformer};
use tch::{Device, Kind, Tensor};

/// One layer's buffers, `[rows, capacity, width]` each (see [`LayerActivations`]): views of
/// one allocation per layer (a few large blocks, which the allocator returns to the system
/// when freed, rather than many that fragment its heap), and the rows read from them so far.
#[derive(Debug)]
struct LayerBuffers {
    parts: [Tensor; 9],
    read: i64,
}

/// The activations of a generation's forward passes ([`crate::generate::generate_recording`]).
#[derive(Debug)]
pub struct RolloutRecord {
    layers: Vec<LayerBuffers>,
    /// The final residual stream (before the final norm), `[rows, capacity, H]`.
    last: Tensor,
    /// Rows read from `last` so far.
    last_read: i64,
    /// Rows of the generation.
    rows: i64,
    /// Columns of the buffers.
    capacity: i64,
    /// The generation's prompt width.
    prompt_len: i64,
}

/// The widths of a layer's nine parts, in [`LayerActivations`]' order (`out` and `lse` flat).
fn part_widths(model: &Transformer) -> [i64; 9] {
    let c = model.config();
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    [h, q, kv, kv, q, c.num_heads, h, i, i]
}

fn parts(a: LayerActivations) -> [Tensor; 9] {
    [a.x, a.q, a.k, a.v, a.out, a.lse, a.mid, a.gate, a.up]
}

impl RolloutRecord {
    /// Bytes a record of `rows` rows of `positions` positions takes (f32).
    pub fn bytes(model: &Transformer, rows: i64, positions: i64) -> u128 {
        let per_token: i64 = part_widths(model).iter().sum::<i64>() * model.num_layers() as i64
            + model.config().hidden_size;
        per_token as u128 * rows.max(0) as u128 * positions.max(0) as u128 * 4
    }

    /// An empty (zero) record of `rows` rows, `capacity` columns, prompts `prompt_len` wide.
    pub fn new(
        model: &Transformer,
        rows: i64,
        capacity: i64,
        prompt_len: i64,
        device: Device,
    ) -> Result<RolloutRecord> {
        let widths = part_widths(model);
        // Allocated in the rollout and freed in the update: kept out of the heap the phases
        // share.
        let zeros = |w: i64| {
            rlvr_core::memory::allocate_mapped(|| {
                Tensor::f_zeros([rows, capacity, w], (Kind::Float, device))
            })
        };
        let mut layers = Vec::with_capacity(model.num_layers());
        for _ in 0..model.num_layers() {
            let block = zeros(widths.iter().sum())?;
            let mut parts = Vec::with_capacity(9);
            let mut offset = 0;
            for w in widths {
                parts.push(block.f_narrow(2, offset, w)?);
                offset += w;
            }
            let parts: [Tensor; 9] = parts
                .try_into()
                .map_err(|_| ModelError::Config("nine parts per layer".into()))?;
            layers.push(LayerBuffers { parts, read: 0 });
        }
        Ok(RolloutRecord {
            layers,
            last: zeros(model.config().hidden_size)?,
            last_read: 0,
            rows,
            capacity,
            prompt_len,
        })
    }

    /// The generation's prompt width.
    pub fn prompt_len(&self) -> i64 {
        self.prompt_len
    }

    /// Rows the record holds.
    pub fn rows(&self) -> i64 {
        self.rows
    }

    /// Columns the record holds.
    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Writes layer `i`'s activations of `l` columns from `column` for the record's rows
    /// `rows` (row `j` of `acts` into row `rows[j]`).
    pub fn write_layer(
        &mut self,
        i: usize,
        acts: LayerActivations,
        column: i64,
        rows: &Tensor,
    ) -> Result<()> {
        let Some(layer) = self.layers.get(i) else {
            return Err(ModelError::Config(format!("no layer {i} in the record")));
        };
        for (buf, t) in layer.parts.iter().zip(parts(acts)) {
            let size = t.size();
            let t = t.f_reshape([size[0], size[1], -1])?;
            write_columns(buf, &t, column, rows)?;
        }
        Ok(())
    }

    /// Writes the final residual stream `[rows, l, H]` of `l` columns from `column`.
    pub fn write_last(&mut self, last: &Tensor, column: i64, rows: &Tensor) -> Result<()> {
        write_columns(&self.last, last, column, rows)
    }

    /// Layer `i`'s input and what its forward keeps ([`SavedAttention`] with the projections)
    /// for the record's rows `rows`, the first `len` columns, in the layouts the update's
    /// backward takes. Each row is read once (the record serves one update step): once as many
    /// rows as the record holds have been read, the layer's buffers are freed, so that an
    /// update of the whole batch frees layer by layer as its backward goes, as the update that
    /// keeps its own forward's tensors does.
    pub fn take_layer(
        &mut self,
        i: usize,
        rows: &Tensor,
        len: i64,
    ) -> Result<(Tensor, SavedAttention)> {
        let total = self.rows;
        let Some(layer) = self.layers.get_mut(i) else {
            return Err(ModelError::Config(format!("no layer {i} in the record")));
        };
        layer.read += rows.size()[0];
        if layer.read > total {
            return Err(ModelError::Config(format!(
                "layer {i} of a generation's record read for more rows than its {total}: a \
                 record serves one update step"
            )));
        }
        let taken = Self::select_layer(layer, rows, len)?;
        if layer.read == total {
            for part in layer.parts.iter_mut() {
                *part = Tensor::new();
            }
        }
        Ok(taken)
    }

    fn select_layer(
        layer: &LayerBuffers,
        rows: &Tensor,
        len: i64,
    ) -> Result<(Tensor, SavedAttention)> {
        let take =
            |t: &Tensor| -> Result<Tensor> { Ok(t.f_narrow(1, 0, len)?.f_index_select(0, rows)?) };
        let [x, q, k, v, out, lse, mid, gate, up] = &layer.parts;
        let b = rows.size()[0];
        let heads = lse.size()[2];
        let out = take(out)?
            .f_view([b, len, heads, -1])?
            .f_transpose(1, 2)?
            .f_contiguous()?;
        let lse = take(lse)?.f_transpose(1, 2)?.f_contiguous()?;
        Ok((
            take(x)?,
            SavedAttention {
                out,
                lse,
                mid: take(mid)?,
                gate_up: Some((take(gate)?, take(up)?)),
                qkv: Some((take(q)?, take(k)?, take(v)?)),
            },
        ))
    }

    /// The final residual stream of rows `rows`, first `len` columns, `[B, len, H]`; freed
    /// once every row has been read, as [`RolloutRecord::take_layer`].
    pub fn take_last(&mut self, rows: &Tensor, len: i64) -> Result<Tensor> {
        self.last_read += rows.size()[0];
        if self.last_read > self.rows {
            return Err(ModelError::Config(format!(
                "a generation's record read for more rows than its {}: a record serves one \
                 update step",
                self.rows
            )));
        }
        let taken = self.last.f_narrow(1, 0, len)?.f_index_select(0, rows)?;
        if self.last_read == self.rows {
            self.last = Tensor::new();
        }
        Ok(taken)
    }
}

/// `buf[rows[j], column + c] = t[j, c]` for a `[rows, capacity, w]` buffer and `t` `[n, l, w]`.
fn write_columns(buf: &Tensor, t: &Tensor, column: i64, rows: &Tensor) -> Result<()> {
    let l = t.size()[1];
    let mut view = buf.f_narrow(1, column, l)?;
    let _ = view.f_index_copy_(0, rows, &t.f_to_kind(Kind::Float)?)?;
    Ok(())
}
