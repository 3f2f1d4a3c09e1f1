"""BabyGPT: tiny language models written from scratch in PyTorch.

The pieces, each usable on its own:

- ``babygpt.data``: corpora (built-in, addition task, your own file), the 90/10 split, batches
- ``babygpt.tokenizer``: character and byte-level BPE tokenizers
- ``babygpt.tokenizer_lab``: what a BPE learns (merges) and does to a text (pieces, compression)
- ``babygpt.models``: the registry of model families (bigram, ngram, lstm, gpt with the attention
  ladder as its presets, llama); ``models.base``: the interface every family answers, hook points
- ``babygpt.trainer``: the training loop, which yields events
- ``babygpt.runs``: start or resume a run from names (what the CLI and the app call)
- ``babygpt.experiments``: several runs' training curves on one chart, and what compares with what
- ``babygpt.ablation``: one base trained several times, one knob changed, same seed and budget, ranked
- ``babygpt.checkpoint``: safetensors + JSON checkpoint directories, and what a run saves (``RunWriter``)
- ``babygpt.sampling``: KV-cached generation, sampling controls, a stream of steps with probabilities
- ``babygpt.evaluation``: loss, bits per character and accuracy (the one loss loop)
- ``babygpt.lora``: LoRA adapters on a frozen base
- ``babygpt.kernels``: opt-in faster kernels for inference, chosen by timing them on this machine
"""

__version__ = "0.1.0"
