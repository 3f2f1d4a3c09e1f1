"""BabyGPT: tiny language models written from scratch in PyTorch.

The pieces, each usable on its own:

- ``babygpt.data``: corpora (built-in, addition task, your own file), the 90/10 split, batches
- ``babygpt.tokenizer``: character and byte-level BPE tokenizers
- ``babygpt.models``: the registry of model families (bigram, ngram, gpt, llama) and presets
- ``babygpt.trainer``: the training loop, which yields events
- ``babygpt.runs``: start or resume a run from names (what the CLI and the app call)
- ``babygpt.checkpoint``: safetensors + JSON checkpoint directories
- ``babygpt.sampling``: KV-cached generation, sampling controls, a stream of steps with probabilities
- ``babygpt.evaluation``: loss, bits per character and accuracy
"""

__version__ = "0.1.0"
