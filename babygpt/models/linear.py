"""``Linear``: ``torch.nn.Linear`` that runs its fp32 forward on oneDNN when no gradient is needed.

Why: generating one token multiplies a single row by every weight matrix, so a step costs the time
to stream all the weights from memory. On x86 CPUs torch's fp32 ``F.linear`` calls MKL, whose
matrix-vector product reaches about a third of the memory bandwidth here (an AMD EPYC); oneDNN's
inner product, the kernel torch itself already uses for bf16, reaches about three quarters.
Measured on 2 vCPUs with the 24 matrices of the ``gpt-shakespeare-char`` shape: 2.6 ms per row
with MKL, 1.3 ms with oneDNN (and 34 ms against 15 ms for 256 rows); ``bench/generate_speed.py``
shows what it does to generation as its ``babygpt-cached-mkl`` row.

oneDNN costs more per call, though (about 15 us against 3 us for a small matrix), and a matrix
that sits in cache gains nothing from better streaming, so only weights of at least
``ONEDNN_MIN_WEIGHTS`` numbers (512 KB in fp32) use it: the 128-wide presets never do; the
384-wide ``gpt-shakespeare-char`` does for every matrix but the output head (its 576 KB attention
projections included: 2.33 ms a token with them on oneDNN, 2.45 ms with them on MKL).

Training keeps ``F.linear``: the oneDNN call has no backward, so it is only taken when autograd
is off (``torch.no_grad`` or ``torch.inference_mode``: sampling, evaluation). The two kernels add
in different orders, so outputs differ by float rounding (about 1e-6 relative). The parameters
and the state dict are exactly those of ``nn.Linear``. ``USE_ONEDNN = False`` turns it off.
"""

from __future__ import annotations

import platform

import torch
import torch.nn.functional as F
from torch import nn

USE_ONEDNN = (
    platform.machine().lower() in ("x86_64", "amd64")
    and torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)
ONEDNN_MIN_WEIGHTS = 128 * 1024


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        # A tensor subclass (an int8-quantized weight) takes F.linear, which dispatches to its own kernel.
        if (USE_ONEDNN and not torch.is_grad_enabled() and x.is_cpu and x.dtype == torch.float32
                and type(weight) is nn.Parameter and weight.dtype == torch.float32
                and weight.numel() >= ONEDNN_MIN_WEIGHTS):
            # (input, weight, bias, then "no fused activation")
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return F.linear(x, weight, bias)
