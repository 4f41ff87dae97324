"""Speech and tone fixtures generated at test time (never committed): espeak-ng + sox, WAV helpers,
and `FakePyAudio`, a declared device list whose streams are audio_fakes.FakeStream."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import soxr

from support.audio_fakes import FakeStream


def make_speech_wav(path: str | Path, text: str, rate_hz: int = 16000, lead_silence_s: float = 0.3,
                    tail_silence_s: float = 1.5) -> Path:
    """Synthesize `text` to a mono s16le WAV at `rate_hz` with silence before and after."""
    path = Path(path)
    raw = path.with_name(path.stem + ".espeak.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(rate_hz), "-c", "1", "-b", "16", "-e", "signed-integer", str(path),
                    "pad", str(lead_silence_s), str(tail_silence_s)], check=True, capture_output=True)
    raw.unlink()
    return path


def read_wav(path: str | Path) -> tuple[np.ndarray, int, int]:
    """(samples int16 [frames, channels] squeezed to 1-D for mono, rate_hz, channels)."""
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        channels = w.getnchannels()
        return (data if channels == 1 else data.reshape(-1, channels)), w.getframerate(), channels


def write_wav(path: str | Path, samples: np.ndarray, rate_hz: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if samples.ndim == 1 else samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return Path(path)


def tone(freq_hz: float, duration_s: float, rate_hz: int, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(duration_s * rate_hz)) / rate_hz
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).round().astype(np.int16)


class FakePyAudio:
    """The slice of the pyaudio.PyAudio API the audio edge uses, over a declared device list:
    `devices` = [{"name", "inputs": {rate: channel counts}, "outputs": {rate: channel counts}}].
    Its streams (`streams`, in open order) are FakeStreams reporting `output_latency_s` with a device
    buffer of `buffer_frames`; `open_error` is raised by the next open(), as a busy device does."""

    def __init__(self, devices: list[dict], default_input: int | None = 0, default_output: int | None = 0, *,
                 output_latency_s: float = 0.0, buffer_frames: int | None = None,
                 open_error: Exception | None = None) -> None:
        self.devices, self.default_input, self.default_output = devices, default_input, default_output
        self._stream_options = {"output_latency_s": output_latency_s, "buffer_frames": buffer_frames}
        self.open_error = open_error
        self.streams: list[FakeStream] = []
        self.terminated = False
        self.closed_by_terminate: list[FakeStream] = []
        self.format_checks = 0

    def __call__(self) -> "FakePyAudio":  # lets the instance itself serve as pyaudio_factory
        return self

    def get_device_count(self) -> int:
        return len(self.devices)

    def get_device_info_by_index(self, index: int) -> dict:
        d = self.devices[index]
        max_in = max((max(chs) for chs in d.get("inputs", {}).values()), default=0)
        max_out = max((max(chs) for chs in d.get("outputs", {}).values()), default=0)
        return {"index": index, "name": d["name"], "maxInputChannels": max_in, "maxOutputChannels": max_out,
                "defaultSampleRate": float(d.get("default_rate", 48000))}

    def get_default_input_device_info(self) -> dict:
        if self.default_input is None:
            raise IOError("No Default Input Device Available")
        return self.get_device_info_by_index(self.default_input)

    def get_default_output_device_info(self) -> dict:
        if self.default_output is None:
            raise IOError("No Default Output Device Available")
        return self.get_device_info_by_index(self.default_output)

    def is_format_supported(self, rate, input_device=None, input_channels=None, input_format=None,
                            output_device=None, output_channels=None, output_format=None) -> bool:
        self.format_checks += 1   # a real one opens the device to test the format
        if input_device is not None:
            ok = input_channels in self.devices[input_device].get("inputs", {}).get(rate, ())
        else:
            ok = output_channels in self.devices[output_device].get("outputs", {}).get(rate, ())
        if not ok:
            raise ValueError(("Invalid sample rate", -9997))
        return True

    def open(self, **kwargs) -> FakeStream:
        if self.open_error is not None:
            error, self.open_error = self.open_error, None
            raise error
        stream = FakeStream(**self._stream_options, **kwargs)
        self.streams.append(stream)
        return stream

    def terminate(self) -> None:
        # PyAudio closes every stream it still has open, then Pa_Terminate frees them: an audio thread
        # inside one of them then crashes the real process, so tests assert this list stays empty
        self.closed_by_terminate = [s for s in self.streams if not s.closed]
        for stream in self.closed_by_terminate:
            stream.close()
        self.terminated = True


SILENCE_THRESHOLD = 64     # |sample| at or below this (int16) counts as silent: -54 dBFS


def waveform_correlation(question: np.ndarray, q_rate_hz: int, played: np.ndarray, p_rate_hz: int) -> float:
    """Sample-accurate: the question resampled to the played rate, aligned at the lag of the
    cross-correlation peak (FFT), Pearson correlation of the waveforms over the voiced question.
    1.0 means the speaker played the question's waveform; 0 means unrelated audio."""
    q = question.astype(np.float64)
    if q_rate_hz != p_rate_hz:
        q = soxr.resample(q, q_rate_hz, p_rate_hz, quality="HQ")
    loud = np.nonzero(np.abs(q) > SILENCE_THRESHOLD)[0]
    if not len(loud):
        raise ValueError("the question is silent")
    q = q[loud[0]:loud[-1] + 1]
    p = played.astype(np.float64)
    if len(p) < len(q):
        return float("nan")
    n = 1 << int(np.ceil(np.log2(len(p) + len(q))))
    xc = np.fft.irfft(np.fft.rfft(p, n) * np.conj(np.fft.rfft(q, n)), n)[: len(p) - len(q) + 1]
    lag = int(np.argmax(xc))
    seg = p[lag:lag + len(q)]
    qz, sz = q - q.mean(), seg - seg.mean()
    denom = np.sqrt((qz ** 2).sum() * (sz ** 2).sum())
    return float((qz * sz).sum() / denom) if denom else 0.0
