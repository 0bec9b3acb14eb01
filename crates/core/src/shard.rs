//! The contract between a sharded update (ZeRO-2/3, Rajbhandari et al. 2020; FSDP) and a
//! decoder: the decoder says when each part of its parameters is needed and when its gradients
//! are complete; the trainer gathers, frees and reduces them (docs/distributed.md).

use crate::error::Result;

/// A part of a decoder whose parameters are gathered and reduced together, by Hugging Face name:
/// `model.embed_tokens.*`, `model.layers.{i}.*` (with their adapters), `lm_head.*`, and the rest
/// (the final norm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamPart {
    /// The token embedding (and the LM head when tied to it).
    Embedding,
    /// Decoder layer `i`.
    Layer(usize),
    /// An untied LM head.
    Head,
    /// Everything else (the final norm).
    Rest,
}

impl ParamPart {
    /// The part a parameter of Hugging Face name `name` belongs to.
    pub fn of_name(name: &str) -> ParamPart {
        if name.starts_with("model.embed_tokens.") {
            return ParamPart::Embedding;
        }
        if name.starts_with("lm_head.") {
            return ParamPart::Head;
        }
        if let Some(rest) = name.strip_prefix("model.layers.") {
            if let Some(Ok(i)) = rest.split('.').next().map(str::parse::<usize>) {
                return ParamPart::Layer(i);
            }
        }
        ParamPart::Rest
    }
}

/// What a sharded update does around each part's forward and backward. Every rank calls the
/// same hooks in the same order (they run collectives).
pub trait ShardHooks {
    /// Whether the hooks do anything (a plain update passes [`NoHooks`]).
    fn active(&self) -> bool {
        true
    }
    /// Before the part's parameters are used: they are whole (ZeRO-3 all-gathers them).
    fn gather(&self, part: ParamPart) -> Result<()>;
    /// After they were used: a gathered copy is freed.
    fn release(&self, part: ParamPart) -> Result<()>;
    /// A hint that `part` is gathered next: a sharded update may start its gather now, to
    /// overlap the current part's compute (FSDP's forward and backward prefetch). Every rank
    /// gives the same hints. Default: nothing.
    fn prefetch(&self, _part: ParamPart) -> Result<()> {
        Ok(())
    }
    /// Before the part's backward: its parameters' gradients are defined and zero.
    fn zero_grads(&self, part: ParamPart) -> Result<()>;
    /// After the part's backward: its gradients are reduced into their owners' slices and freed.
    fn reduce_grads(&self, part: ParamPart) -> Result<()>;
}

/// The hooks of an unsharded update: nothing happens.
pub struct NoHooks;

impl ShardHooks for NoHooks {
    fn active(&self) -> bool {
        false
    }
    fn gather(&self, _: ParamPart) -> Result<()> {
        Ok(())
    }
    fn release(&self, _: ParamPart) -> Result<()> {
        Ok(())
    }
    fn zero_grads(&self, _: ParamPart) -> Result<()> {
        Ok(())
    }
    fn reduce_grads(&self, _: ParamPart) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_hugging_face_names() {
        assert_eq!(
            ParamPart::of_name("model.embed_tokens.weight"),
            ParamPart::Embedding
        );
        assert_eq!(
            ParamPart::of_name("model.layers.12.self_attn.q_proj.lora_A.weight"),
            ParamPart::Layer(12)
        );
        assert_eq!(ParamPart::of_name("lm_head.weight"), ParamPart::Head);
        assert_eq!(ParamPart::of_name("model.norm.weight"), ParamPart::Rest);
        assert_eq!(ParamPart::of_name("model.layers.x.y"), ParamPart::Rest);
    }
}
