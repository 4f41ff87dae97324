"""`PyAudioMic` reading on its own thread, against FakePyAudio streams the test plays the device of
(support/audio_fakes.py): one frame first then `block_ms` reads, downmix and reframing, overflows
from lost time, failures reported once, the watchdog, and a close that never hangs."""

import logging
import threading
import time

import numpy as np
import pyaudio
import pytest

from pivoice.audio.capture import PyAudioMic
from pivoice.audio.host import PortAudioHost
from pivoice.audio.ports import AudioDeviceError
from support.audio_fakes import DEVICE_GONE, Groups, Reports, StepClock, ThreadKiller, close_mic, ramp
from support.fixtures_audio import FakePyAudio


def open_watching_thread(mic, on_frames, on_error):
    """Open `mic` and return the reader thread it started (it names it "mic")."""
    before = set(threading.enumerate())
    mic.open(on_frames, on_error)
    threads = [t for t in threading.enumerate() if t not in before and t.name == "mic"]
    assert len(threads) == 1, threads
    return threads[0]


USB_MIC = {"name": "USB PnP Sound Device: Audio (hw:1,0)", "inputs": {44100: (1,), 48000: (1,)}}
STEREO_MIC = {"name": "Webcam C270: USB Audio (hw:2,0)", "inputs": {16000: (2,), 48000: (2,)}}
USB_LABEL = "input 'USB PnP Sound Device: Audio (hw:1,0)'"


def test_mic_reads_one_frame_first_then_block_ms_at_a_time():
    pa = FakePyAudio([USB_MIC])
    groups = Groups()
    mic = PyAudioMic("usb pnp", 48000, frame_ms=20, block_ms=100, pyaudio_factory=pa, monotonic=StepClock(50.0))
    mic.open(groups)
    stream = pa.streams[0]
    pcm = ramp(960 + 3 * 4800)
    stream.feed(pcm[:1920])          # one frame is enough for the first delivery (a press waits for it)
    groups.wait_frames(1)
    assert stream.wait_for(lambda s: len(s.reads) == 2)
    assert groups.groups == [[pcm[:1920]]] and stream.reads == [960, 4800]
    for i in range(1920, len(pcm), 700):   # the device's own chunking does not show through
        stream.feed(pcm[i:i + 700])
    groups.wait_frames(16)
    assert stream.wait_for(lambda s: len(s.reads) == 5)
    assert stream.reads == [960, 4800, 4800, 4800, 4800]
    assert [len(g) for g in groups.groups] == [1, 5, 5, 5]
    assert all(len(f) == 1920 for f in groups.frames()) and b"".join(groups.frames()) == pcm
    # never asks PyAudio to raise on an overflow: it would throw the block's samples away
    assert stream.overflow_flags == [False] * 5
    assert mic.overflows == 0
    close_mic(mic, stream)
    with pytest.raises(ValueError, match="block_ms 50 is not a multiple of frame_ms 20"):
        PyAudioMic("usb pnp", frame_ms=20, block_ms=50, pyaudio_factory=pa)


def test_mic_downmixes_stereo_reframes_and_counts_overflows_from_lost_time(caplog):
    clock = StepClock(50.0)
    pa = FakePyAudio([STEREO_MIC])
    groups = Groups()
    mic = PyAudioMic("webcam", 16000, frame_ms=20, block_ms=100, pyaudio_factory=pa, monotonic=clock)
    mic.open(groups)
    stream = pa.streams[0]
    assert stream.kwargs["channels"] == 2 and mic.sample_rate_hz == 16000

    def stereo(n):
        return np.stack([np.full(n, 100), np.full(n, 300)], axis=1).astype("<i2").tobytes()

    def deliver(lost_s):
        """One 100 ms block whose read returns `lost_s` later than the audio it carries explains."""
        clock.now_s += 0.100 + lost_s
        stream.feed(stereo(1600))
        reads = len(stream.reads)
        assert stream.wait_for(lambda s: len(s.reads) == reads + 1)   # the reader has done its sums

    stream.feed(stereo(320))                  # the first frame: the clock starts here (start latency is no loss)
    assert stream.wait_for(lambda s: len(s.reads) == 2)
    with caplog.at_level(logging.WARNING):
        deliver(0.0)
        deliver(0.2)      # 200 ms went missing: more than one 100 ms period behind -> an overflow
        deliver(0.15)     # and 150 ms more
        deliver(0.02)     # 20 ms of scheduling jitter is not a loss
        assert mic.overflows == 2
        assert not caplog.records   # the audio thread never logs (ports.py)
        mic.check_stream()          # the controller thread's tick reports them, rate-limited
        mic.check_stream()
        deliver(5.0)      # 5 s later: still inside the 10 s window, not logged yet
        mic.check_stream()
        deliver(5.0)      # 10 s: logged
        mic.check_stream()
    frames = groups.frames()
    assert [len(g) for g in groups.groups] == [1] + [5] * 6
    assert all(f == np.full(320, 200, dtype="<i2").tobytes() for f in frames)
    assert [r.getMessage() for r in caplog.records] == [
        "mic 'Webcam C270: USB Audio (hw:2,0)': input overflow (2 since start, 2 since the last report); "
        "audio was lost",
        "mic 'Webcam C270: USB Audio (hw:2,0)': input overflow (4 since start, 2 since the last report); "
        "audio was lost"]
    assert mic.stats() == {"device": "Webcam C270: USB Audio (hw:2,0)", "overflows": 4, "stream_errors": 0,
                           "last_error": None}
    close_mic(mic, stream)


def test_mic_whose_read_fails_reports_reading_failed_once():
    pa = FakePyAudio([USB_MIC])
    errors, groups = Reports(), Groups()
    mic = PyAudioMic("usb pnp", pyaudio_factory=pa)
    thread = open_watching_thread(mic, groups, errors)
    stream = pa.streams[0]
    stream.feed(bytes(1920))
    groups.wait_frames(1)
    # USB mic unplugged: the blocked read comes back with PortAudio's host error, as PyAudio raises it
    stream.fail(OSError(pyaudio.paUnanticipatedHostError, "Unanticipated host error"))
    errors.wait()
    thread.join(1.0)
    assert not thread.is_alive()   # the reader ends: the device is dead until closed and reopened
    mic.check_stream()
    mic.check_stream()
    assert errors.reasons == [f"{USB_LABEL}: reading failed: [Errno -9999] Unanticipated host error {DEVICE_GONE}"]
    assert mic.stats()["stream_errors"] == 1 and mic.stats()["last_error"] == errors.reasons[0]
    mic.close()
    assert stream.closed and len(errors.reasons) == 1


def test_mic_on_frames_that_raises_reports_once_and_the_next_open_starts_clean():
    pa = FakePyAudio([USB_MIC])
    errors = Reports()

    def on_frames(frames):
        raise RuntimeError("queue is broken")
    mic = PyAudioMic("usb pnp", pyaudio_factory=pa)
    mic.open(on_frames, errors)
    stream = pa.streams[0]
    stream.feed(bytes(1920 * 11))
    errors.wait()
    mic.check_stream()
    assert errors.reasons == [f"{USB_LABEL}: audio thread failed (RuntimeError: queue is broken)"]
    assert stream.reads == [960]   # the reader ended at the first failure, it did not read on
    mic.close()
    groups = Groups()
    mic.open(groups, errors)       # the next conversation starts clean
    stream = pa.streams[1]
    stream.feed(bytes(1920))
    groups.wait_frames(1)
    mic.check_stream()
    assert len(errors.reasons) == 1 and mic.stats()["stream_errors"] == 1
    close_mic(mic, stream)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_mic_watchdog_reports_an_ended_or_stalled_reader_once_and_never_after_close():
    clock = StepClock(50.0)
    pa = FakePyAudio([USB_MIC])
    errors = Reports()
    mic = PyAudioMic("usb pnp", pyaudio_factory=pa, monotonic=clock, stall_s=2.0, frame_ms=20, block_ms=20)
    mic.open(lambda frames: None, errors)
    stream = pa.streams[0]
    for i in range(5):              # reads keep returning: healthy however long it runs
        clock.now_s += 1.5
        mic.check_stream()
        stream.feed(bytes(1920))
        assert stream.wait_for(lambda s: len(s.reads) == i + 2)
        mic.check_stream()
    assert errors.reasons == []
    clock.now_s += 1.9              # the read has waited 1.9 s
    mic.check_stream()
    assert errors.reasons == []
    clock.now_s += 0.2              # 2.1 s: a device that stopped clocking without an error
    mic.check_stream()
    mic.check_stream()
    assert errors.reasons == [f"{USB_LABEL}: no audio from the device for 2.1 s (device stalled)"]
    close_mic(mic, stream)

    thread = open_watching_thread(mic, lambda frames: None, errors)
    stream = pa.streams[1]
    stream.fail(ThreadKiller())     # the reader ends without reporting
    thread.join(1.0)
    assert errors.reasons[1:] == []
    mic.check_stream()
    mic.check_stream()
    assert errors.reasons[1:] == [f"{USB_LABEL}: audio thread ended {DEVICE_GONE}"]
    mic.close()

    mic.open(lambda frames: None, errors)
    close_mic(mic, pa.streams[2])
    clock.now_s += 60
    mic.check_stream()              # closed: nothing to watch, nothing reported
    assert len(errors.reasons) == 2 and mic.stats()["stream_errors"] == 2


def test_mic_close_does_not_wait_forever_for_a_reader_stuck_in_the_driver_nor_close_the_stream_under_it(caplog):
    # closing a real PortAudio stream while a read is inside it frees memory the read uses: the
    # process crashes (SIGSEGV, reproduced on the PulseAudio rig). The stuck reader keeps its stream
    # and closes it itself once the driver returns.
    pa = FakePyAudio([USB_MIC])
    host = PortAudioHost(pa)
    errors = Reports()
    delivered = Groups()
    mic = PyAudioMic("usb pnp", frame_ms=20, block_ms=20, portaudio=host)
    thread = open_watching_thread(mic, delivered, errors)
    stream = pa.streams[0]
    stream.feed(bytes(1920))        # the first frame comes; then the device stops clocking
    assert stream.wait_for(lambda s: s.reads == [960, 960])   # blocked in a read that will never return data
    start_s = time.monotonic()
    with caplog.at_level(logging.WARNING):
        mic.close()
    took_s = time.monotonic() - start_s
    assert 1.0 <= took_s < 2.0      # block_ms + 1 s, then close() gives up waiting ...
    assert ("mic 'USB PnP Sound Device: Audio (hw:1,0)': the reader is stuck in the driver; its stream will be "
            "closed when the driver returns") in caplog.text
    assert not stream.closed and thread.is_alive() and host.open_streams == 1   # ... but leaves the stream to it

    mic.open(lambda frames: None, errors)   # the next press gets a stream of its own
    assert len(pa.streams) == 2 and host.open_streams == 2
    frames_before = len(delivered.frames())
    stream.feed(bytes(1920))        # the driver lets go of the stuck read
    thread.join(1.0)
    assert not thread.is_alive() and stream.closed and stream.stops == 1
    assert len(delivered.frames()) == frames_before   # the old reader delivered nothing after close
    assert errors.reasons == [] and mic.stats()["stream_errors"] == 0
    close_mic(mic, pa.streams[1])
    assert host.open_streams == 0 and pa.closed_by_terminate == [] and not pa.terminated


def test_mic_that_cannot_open_says_which_device_and_can_be_opened_again():
    pa = FakePyAudio([USB_MIC], open_error=OSError(pyaudio.paDeviceUnavailable, "Device unavailable"))
    mic = PyAudioMic("usb pnp", pyaudio_factory=pa)
    with pytest.raises(AudioDeviceError) as err:
        mic.open(lambda frames: None)
    assert str(err.value) == ("cannot open audio input [0] 'USB PnP Sound Device: Audio (hw:1,0)' at 48000 Hz, "
                              "1 ch: [Errno -9985] Device unavailable (busy or unplugged?)")
    groups = Groups()
    mic.open(groups)                 # the device is free again: the next press works
    pa.streams[0].feed(bytes(1920))
    groups.wait_frames(1)
    close_mic(mic, pa.streams[0])


def test_mic_waits_for_the_first_frame_asleep_and_a_close_meanwhile_never_reads():
    # PortAudio's blocking read spins until a new capture stream's first period arrives (28-35 ms of CPU
    # on ALSA's pulse plugin), so the reader asks what is there, sleeping between questions, and reads
    # only once a frame is in
    pa = FakePyAudio([USB_MIC])
    groups = Groups()
    mic = PyAudioMic("usb pnp", 48000, frame_ms=20, block_ms=100, pyaudio_factory=pa)
    mic.open(groups)
    stream = pa.streams[0]
    stream.feed(bytes(1000))        # half a frame at 48 kHz: not yet
    assert stream.wait_for(lambda s: s.read_polls >= 3)
    assert stream.reads == []
    started_s = time.monotonic()
    stream.feed(bytes(920))
    groups.wait_frames(1)
    assert time.monotonic() - started_s < 0.5 and stream.reads[0] == 960
    polls = stream.read_polls
    stream.feed(bytes(9600))
    groups.wait_frames(6)
    assert stream.read_polls == polls   # only the first frame is waited for this way
    close_mic(mic, stream)

    mic.open(groups)
    stream = pa.streams[1]
    assert stream.wait_for(lambda s: s.read_polls >= 1)
    started_s = time.monotonic()
    mic.close()                     # nothing came: the close ends the wait at once
    assert time.monotonic() - started_s < 0.5
    assert stream.closed and stream.reads == []
