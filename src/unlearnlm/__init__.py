"""unlearnlm: machine unlearning for causal language models."""
import logging as _logging

# torchao (the quantisation attack; transformers imports it too when installed) logs one line per
# CUDA extension a CPU build cannot load, and torch one per enum it registers: noise, not news.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)

__version__ = "0.1.0"
