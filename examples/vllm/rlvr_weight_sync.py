"""vLLM worker extension that lets rlvr push trained weights into a running `vllm serve`.

rlvr's trainer (`[rollout] engine = "server"`, `api = "vllm"`, `sync = "disk"`) writes the policy
as a Hugging Face safetensors folder after each update and calls, through vLLM's development
endpoint `POST /collective_rpc`, the method below on every worker; it loads the folder's tensors
into the worker's model with the model's own `load_weights` (which maps HF names to vLLM's fused
layers). Start the server with this class and the endpoint enabled (docs/rollouts.md):

    VLLM_SERVER_DEV_MODE=1 PYTHONPATH=examples/vllm \
        vllm serve MODEL_DIR --worker-extension-cls rlvr_weight_sync.RlvrWeightSync \
        --dtype float32 --seed 0 --port 8000

Development and deployment helper only: rlvr never runs Python itself.
"""

import glob
import os


class RlvrWeightSync:
    """Mixed into vLLM's worker class by `--worker-extension-cls`."""

    def rlvr_load_folder(self, path):
        """Loads every `*.safetensors` file of `path` into this worker's model; returns the
        number of tensors loaded (or -1 when vLLM reloaded the folder itself)."""
        from safetensors.torch import load_file

        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
        if not files:
            raise FileNotFoundError(f"{path} holds no *.safetensors file")
        weights = []
        for f in files:
            weights.extend(load_file(f).items())
        runner = self.model_runner
        model = runner.get_model() if hasattr(runner, "get_model") else runner.model
        config = getattr(model, "config", None)
        tied = bool(getattr(config, "tie_word_embeddings", False))
        names = {n for n, _ in weights}
        if tied and "lm_head.weight" not in names and "model.embed_tokens.weight" in names:
            # Tied embeddings are saved once; the LM head is the same matrix.
            embed = dict(weights)["model.embed_tokens.weight"]
            weights.append(("lm_head.weight", embed))
        if hasattr(runner, "reload_weights"):
            # vLLM ≥ 0.12: in-place reload that re-runs the kernels' weight processing (on CPU
            # the linear weights are repacked after loading, so plain load_weights no longer
            # fits the parameters).
            runner.reload_weights(weights_iterator=iter(weights), is_checkpoint_format=True)
        else:
            model.load_weights(weights=weights)
        head = getattr(model, "lm_head", None)
        embed_tokens = getattr(getattr(model, "model", None), "embed_tokens", None)
        if tied and head is not None and embed_tokens is not None:
            # Keep the head on the reloaded embedding matrix (a reload may give the embedding a
            # new tensor and leave the head on the old one).
            import torch

            with torch.no_grad():
                if head.weight.shape == embed_tokens.weight.shape:
                    head.weight.data = embed_tokens.weight.data
        return len(weights)
