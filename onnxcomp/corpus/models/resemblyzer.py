"""Resemblyzer's speaker encoder (Resemblyzer 0.1.4, pretrained.pt), rebuilt in torch and exported by dynamo.

``VoiceEncoder`` is a 3-layer LSTM over 40 mel bands whose last hidden state goes through Linear + ReLU and an L2
normalisation: a 256-d voice embedding per 160-frame (1.6 s) partial utterance. The feeds follow
``preprocess_wav`` and ``embed_utterance``: volume raised to -30 dBFS, long silences cut, a power mel
spectrogram (librosa's defaults: 25 ms Hann window, 10 ms hop, centred with zero padding, Slaney mel scale and
area normalisation), sliced into partials at 1.3 per second. The mel filterbank and the silence cut are written
here in numpy (frame energy stands in for webrtcvad), so neither librosa nor webrtcvad is needed.
"""

from __future__ import annotations

import io

import numpy as np

from onnxcomp.corpus.inputs import speech
from onnxcomp.corpus.spec import BuildContext, Feed, ModelSpec, Wheel
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.embedding import embedding_agreement

WHEEL = Wheel("Resemblyzer", "0.1.4")
N_FFT, HOP, N_MELS, PARTIAL = 400, 160, 40, 160
VOICES = speech.VOICES  # 8 speakers; each split says 2 of its own sentences in every voice


def build(ctx: BuildContext) -> bytes:
    import torch

    class VoiceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(N_MELS, 256, 3, batch_first=True)
            self.linear = torch.nn.Linear(256, 256)

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.norm(raw, dim=1, keepdim=True)

    torch.set_num_threads(1)
    checkpoint = torch.load(io.BytesIO(ctx.read_member(WHEEL, "resemblyzer/pretrained.pt")), map_location="cpu",
                            weights_only=True)
    state = {k: v for k, v in checkpoint["model_state"].items() if k.startswith(("lstm.", "linear."))}
    encoder = VoiceEncoder().eval()
    encoder.load_state_dict(state)  # strict: the checkpoint's similarity_* scalars are training-only
    example = torch.zeros(2, PARTIAL, N_MELS)  # batch 2: a size-1 example would be specialised to a constant
    dims = {"mels": {0: torch.export.Dim("batch"), 1: torch.export.Dim("frames")}}
    program = torch.onnx.export(encoder, (example,), dynamo=True, input_names=["mels"], output_names=["embedding"],
                                dynamic_shapes=dims, verbose=False)
    return program.model_proto.SerializeToString()


def mel_filterbank(sr: int = speech.SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """[n_mels, 1 + n_fft // 2] triangular filters on the Slaney mel scale, each scaled to unit area."""
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, np.float64)
        return np.where(f < 1000, f / (200 / 3), 15 + np.log(np.maximum(f, 1e-9) / 1000) / (np.log(6.4) / 27))

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m < 15, m * (200 / 3), 1000 * np.exp((m - 15) * (np.log(6.4) / 27)))

    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    bins = np.linspace(0, sr / 2, 1 + n_fft // 2)
    rising = (bins[None] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    falling = (edges[2:, None] - bins[None]) / np.diff(edges)[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling))
    return (weights * (2 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


def mel_frames(wav: np.ndarray) -> np.ndarray:
    """[frames, 40] power mel spectrogram, one frame per 10 ms (centred STFT, zero padding)."""
    padded = np.pad(wav.astype(np.float32), N_FFT // 2)
    n = 1 + (len(padded) - N_FFT) // HOP
    frames = padded[np.arange(N_FFT)[None] + HOP * np.arange(n)[:, None]]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return (power @ mel_filterbank().T.astype(np.float64)).astype(np.float32)


def preprocess(wav: np.ndarray) -> np.ndarray:
    """Raise the volume to -30 dBFS (never lower it), then drop silences longer than ~0.2 s."""
    rms_db = 20 * np.log10(max(float(np.sqrt(np.mean((wav * 32767.0) ** 2))), 1e-9) / 32767.0)
    if rms_db < -30:
        wav = wav * np.float32(10 ** ((-30 - rms_db) / 20))
    win = 480  # 30 ms
    wav = wav[: len(wav) // win * win]
    energy = 10 * np.log10(np.mean(wav.reshape(-1, win) ** 2, axis=1) + 1e-12)
    voiced = (energy > energy.max() - 40).astype(float)
    smooth = np.convolve(np.pad(voiced, (3, 4)), np.ones(8) / 8, mode="valid")  # 8-window moving average
    keep = np.convolve(np.round(smooth) > 0, np.ones(7), mode="same") > 0  # dilation by 7 windows
    return wav[np.repeat(keep, win)]


def partials(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One 160-frame partial of the utterance, chosen among embed_utterance's slices (step 77 frames)."""
    n_frames = int(np.ceil((len(wav) + 1) / HOP))
    step = round(speech.SAMPLE_RATE / 1.3 / HOP)
    starts = list(range(0, max(1, n_frames - PARTIAL + step + 1), step))
    if len(starts) > 1 and (len(wav) - starts[-1] * HOP) / (PARTIAL * HOP) < 0.75:
        starts.pop()  # embed_utterance drops a last partial that covers less than 75 % of its frames
    wav = np.pad(wav, (0, max(0, (starts[-1] + PARTIAL) * HOP - len(wav))))
    mel = mel_frames(wav)
    start = starts[int(rng.integers(len(starts)))]
    return mel[start : start + PARTIAL]


def inputs(split: str, count: int) -> list[Feed]:
    rng = np.random.default_rng(51 if split == "calib" else 52)
    texts = speech.sentences(split)
    feeds = []
    for i in range(count):
        voice = VOICES[i % len(VOICES)]
        text = texts[(i // len(VOICES) + 3 * (i % len(VOICES))) % len(texts)]
        wav = speech.speak(speech.Utterance(text, voice, int(rng.choice((140, 160, 180)))))
        feeds.append({"mels": partials(preprocess(wav), rng)[None]})
    return feeds


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return embedding_agreement(reference, candidate, output="embedding", bar=0.99)


SPEC = ModelSpec(
    name="resemblyzer",
    task="speaker embedding (Resemblyzer voice encoder, 3-layer LSTM)",
    exporter="torch.onnx (dynamo, torch 2.13)",
    wheels=(WHEEL,),
    build=build,
    inputs=inputs,
    metric=metric,
    kind="recurrent",
    notes="opset 20, IR 10; input mels [batch, frames, 40] (here [1, 160, 40]; power mel, not log: values from 0 to "
          "~1e2), output embedding [batch, 256] L2-normalised (ReduceL2 + Div); 3 ONNX LSTM nodes, one per layer, "
          "whose W/R/B are not initializers: the torch weights (lstm.weight_ih_l0...) go through 32 Slice + "
          "Concat at run time to reorder the gates (i,f,g,o -> i,o,f,c), biases pre-concatenated ([1, 2048]); "
          "zero initial states from the input's Shape; last layer's h via Concat + Gather, then Gemm + Relu"
)
