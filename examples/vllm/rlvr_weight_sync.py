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
        number of tensors loaded."""
        from safetensors.torch import load_file

        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
        if not files:
            raise FileNotFoundError(f"{path} holds no *.safetensors file")
        weights = []
        for f in files:
            weights.extend(load_file(f).items())
        self.model_runner.model.load_weights(weights=weights)
        return len(weights)
