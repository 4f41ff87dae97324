"""`PyAudioSpeaker` writing on its own thread, against FakePyAudio streams the test plays the device of
(support/audio_fakes.py): upmix, play-out and drain once, the stream stopped between replies,
barge-in dropping the device buffer, underflows from the write error, failures reported once, and
the watchdog."""

import logging
import threading
import time

import numpy as np
import pyaudio
import pytest

from pivoice.audio.playback import PyAudioSpeaker, upmix
from support.audio_fakes import DEVICE_GONE, Reports, StepClock, ThreadKiller, ramp
from support.fixtures_audio import FakePyAudio


USB_SPEAKER = {"name": "USB Audio", "outputs": {16000: (1,)}}


class Drains:
    """An `on_drained` that counts its calls (audio thread)."""

    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1   # only the writer thread writes it


def be_the_device(stream, period, until, timeout_s=2.0):
    """Play one period each time the writer has filled the device buffer, until `until()` holds."""
    deadline_s = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline_s, (len(stream.written), stream.polls)
        stream.wait_for(lambda s: s.write_available() < period or not s.started, 0.2)
        stream.advance(period)


def test_upmix_copies_mono_to_every_channel():
    mono = np.array([1, -2, 300, -32768, 32767], dtype="<i2").tobytes()
    assert upmix(mono, 1) is mono
    for channels in (2, 3):
        out = np.frombuffer(upmix(mono, channels), dtype="<i2").reshape(-1, channels)
        assert out.tolist() == [[v] * channels for v in (1, -2, 300, -32768, 32767)]
    assert upmix(bytes(8), 2) == bytes(16)


def test_pyaudio_speaker_duplicates_mono_when_the_device_is_stereo_only():
    pa = FakePyAudio([{"name": "bcm2835 Headphones", "outputs": {44100: (2,), 48000: (2,)}}])
    drains = Drains()
    spk = PyAudioSpeaker(pyaudio_factory=pa, prime_ms=0)
    spk.open(drains)
    stream = pa.streams[0]
    assert stream.kwargs["rate"] == 48000 and stream.kwargs["channels"] == 2 and stream.kwargs["output"] is True
    assert stream.kwargs["frames_per_buffer"] == 1920 and "stream_callback" not in stream.kwargs
    assert stream.kwargs["start"] is False and stream.starts == 0   # opened with the conversation, not running
    spk.write(np.array([1, 2, 3], dtype="<i2").tobytes())
    be_the_device(stream, 1920, lambda: drains.count)
    assert all(len(block) == 1920 * 2 * 2 for block in stream.written)   # whole periods, both channels
    assert np.frombuffer(stream.written[0], dtype="<i2")[:8].tolist() == [1, 1, 2, 2, 3, 3, 0, 0]
    assert b"".join(stream.written)[12:] == bytes(len(b"".join(stream.written)) - 12)
    assert drains.count == 1 and spk.played_samples() == 3
    spk.close()
    assert stream.closed and not pa.terminated   # the PortAudio host outlives the conversation


def test_pyaudio_speaker_plays_out_drains_once_and_stops_the_stream_between_replies():
    # the device buffer holds three 10 ms periods; PortAudio reports two of them as the output latency
    pa = FakePyAudio([USB_SPEAKER], output_latency_s=0.020)
    drains = Drains()
    spk = PyAudioSpeaker(pyaudio_factory=pa, prime_ms=0, buffer_ms=10)
    spk.open(drains)
    stream = pa.streams[0]
    assert stream.kwargs["frames_per_buffer"] == 160 and stream.buffer_frames == 480
    assert spk.output_latency_s == 0.020
    assert not stream.wait_for(lambda s: s.polls or s.starts, 0.05)   # open, nothing queued: nothing wakes
    reply = ramp(800)
    spk.write(reply)
    be_the_device(stream, 160, lambda: drains.count)
    assert drains.count == 1 and stream.starts == 1 and stream.stops == 1 and not stream.is_active()
    # drained only once the device has played the whole reply: what the stop dropped was silence
    assert bytes(stream.played[:1600]) == reply and bytes(stream.played[1600:]) == bytes(len(stream.played) - 1600)
    assert stream.dropped == [bytes(len(stream.dropped[0]))]
    assert b"".join(stream.written) == reply + bytes(2 * 480)   # drained after a whole device buffer of silence
    assert stream.overfilled == 0                       # it only writes what fits: a write never blocks
    assert all(stream.underflow_flags)                  # it asks PortAudio to report underflows
    assert spk.played_samples() == 800 and spk.pending_samples() == 0
    # between replies the stream is stopped and the writer waits for audio, not for the device
    polls, writes = stream.polls, len(stream.written)
    assert not stream.wait_for(lambda s: s.polls > polls or len(s.written) > writes, 0.1)
    assert drains.count == 1
    spk.write(ramp(320, 5000))                          # the next reply starts the stream again
    be_the_device(stream, 160, lambda: drains.count == 2)
    assert stream.starts == 2 and stream.stops == 2 and drains.count == 2
    spk.close()
    assert stream.closed


def test_pyaudio_speaker_waiting_for_room_is_not_woken_by_each_delta_but_a_stop_still_reaches_it():
    # while a reply arrives (faster than real time) deltas come tens of times a second; the writer
    # waiting for the device to make room has nothing to do with them
    pa = FakePyAudio([USB_SPEAKER])
    spk = PyAudioSpeaker(pyaudio_factory=pa, prime_ms=0, buffer_ms=100)   # 100 ms periods: one room check each
    spk.open(Drains())
    stream = pa.streams[0]
    spk.write(ramp(16000))                   # 1 s queued: the writer fills the device, then waits for room
    assert stream.wait_for(lambda s: s.write_available() < 1600)
    polls = stream.polls
    for _ in range(40):                       # 40 deltas, 5 ms apart, while the device plays nothing
        spk.write(ramp(160))
        time.sleep(0.005)
    # before: one early wakeup per delta (40); now only the timed room checks, ~one per 100 ms
    assert stream.polls - polls <= 5, stream.polls - polls
    stop_at = time.monotonic()
    spk.stop()                                # a barge-in still reaches it at once
    assert stream.wait_for(lambda s: s.stops == 1)
    assert time.monotonic() - stop_at < 0.05
    spk.close()


def test_pyaudio_speaker_stop_drops_the_device_buffer_at_once_and_never_drains_after_it():
    # 200 ms periods: a writer that only noticed stop() on its next poll would take 200 ms
    pa = FakePyAudio([USB_SPEAKER], output_latency_s=0.4)
    drains = Drains()
    spk = PyAudioSpeaker(pyaudio_factory=pa, prime_ms=0, buffer_ms=200)
    spk.open(drains)
    stream = pa.streams[0]
    spk.write(ramp(16000))          # a 1 s reply
    # device full; a poll after the writer's first wait for room: it is waiting again (for up to 200 ms)
    assert stream.wait_for(lambda s: len(s.written) == 3 and s.polls >= 6)
    start_s = time.monotonic()
    spk.stop()                      # barge-in
    assert stream.wait_for(lambda s: s.stops == 1, 1.0)
    stop_s = time.monotonic() - start_s
    assert stop_s < 0.1, stop_s
    # the stop dropped the 600 ms of reply still in the device, rather than letting it play
    assert stream.dropped == [ramp(16000)[:2 * 9600]] and not stream.is_active()
    assert spk.pending_samples() <= 9600   # the queued 400 ms are gone
    polls, writes = stream.polls, len(stream.written)
    assert not stream.wait_for(lambda s: s.polls > polls or len(s.written) > writes or s.starts > 1, 0.3)
    assert drains.count == 0        # stopped audio does not count as played out
    spk.write(ramp(3200, 7))        # the next reply starts the stream again, its audio first
    assert stream.wait_for(lambda s: len(s.written) > writes)
    assert stream.starts == 2 and stream.written[writes] == ramp(3200, 7)
    spk.write(ramp(16000))          # close reaches a writer waiting for room at once, too
    assert stream.wait_for(lambda s: len(s.written) == writes + 3 and s.polls >= polls + 6)
    start_s = time.monotonic()
    spk.close()
    close_s = time.monotonic() - start_s
    assert close_s < 0.1, close_s
    assert stream.closed and drains.count == 0
    print(f"barge-in stop() -> stream stopped {1000 * stop_s:.2f} ms; close with the writer waiting "
          f"{1000 * close_s:.2f} ms")


def test_pyaudio_speaker_counts_underflows_from_the_write_error_and_logs_them_rate_limited(caplog):
    clock = StepClock()
    pa = FakePyAudio([USB_SPEAKER])
    drains, errors = Drains(), Reports()
    spk = PyAudioSpeaker(pyaudio_factory=pa, prime_ms=0, buffer_ms=10, clock=clock)
    spk.open(drains, errors)
    stream = pa.streams[0]

    def underflowed():   # as PyAudio raises it: PortAudio's code, then its text
        return OSError(pyaudio.paOutputUnderflowed, "Output underflowed")
    stream.fail_writes(underflowed(), underflowed())
    reply = ramp(480)
    spk.write(reply)
    with caplog.at_level(logging.WARNING):
        be_the_device(stream, 160, lambda: drains.count)
        # PortAudio wrote the block and reported the gap before it: nothing is written twice or lost
        assert b"".join(stream.written) == reply + bytes(2 * 480) and spk.underflows == 2
        assert not caplog.records       # the audio thread never logs
        spk.check_stream()
        spk.check_stream()
        stream.fail_writes(underflowed())
        spk.write(ramp(160))
        be_the_device(stream, 160, lambda: drains.count == 2)
        clock.now_s += 5.0              # inside the 10 s window: counted, not logged yet
        spk.check_stream()
        clock.now_s += 5.0
        spk.check_stream()
    assert [r.getMessage() for r in caplog.records] == [
        "speaker 'USB Audio': output underflow (2 since start, 2 since the last report); the reply had gaps",
        "speaker 'USB Audio': output underflow (3 since start, 1 since the last report); the reply had gaps"]
    assert errors.reasons == []
    assert spk.stats() == {"device": "USB Audio", "underflows": 3, "stream_errors": 0, "last_error": None}
    spk.close()


def test_pyaudio_speaker_write_error_reports_writing_failed_once():
    pa = FakePyAudio([USB_SPEAKER])
    drains, errors = Drains(), Reports()
    spk = PyAudioSpeaker(pyaudio_factory=pa, prime_ms=0, buffer_ms=10)
    spk.open(drains, errors)
    stream = pa.streams[0]
    # USB speaker unplugged mid-reply: the write fails with PortAudio's host error
    stream.fail_writes(OSError(pyaudio.paUnanticipatedHostError, "Unanticipated host error"))
    spk.write(ramp(1600))
    errors.wait()
    spk.check_stream()
    spk.check_stream()
    assert errors.reasons == [f"output 'USB Audio': writing failed: [Errno -9999] Unanticipated host error "
                              f"{DEVICE_GONE}"]
    assert len(stream.written) == 1      # the writer ended at the failure
    assert spk.pending_samples() > 0     # the reply never drains: only on_error can end the wait
    assert spk.stats()["stream_errors"] == 1 and spk.stats()["last_error"] == errors.reasons[0]
    spk.close()
    assert drains.count == 0 and len(errors.reasons) == 1 and stream.closed


def test_pyaudio_speaker_on_drained_that_raises_reports_once_and_the_next_open_starts_clean():
    pa = FakePyAudio([USB_SPEAKER])
    errors = Reports()

    def on_drained():
        raise RuntimeError("event queue gone")
    spk = PyAudioSpeaker(pyaudio_factory=pa, prime_ms=0, buffer_ms=10)
    spk.open(on_drained, errors)
    spk.write(ramp(100))
    be_the_device(pa.streams[0], 160, lambda: errors.reasons)
    spk.check_stream()
    assert errors.reasons == ["output 'USB Audio': audio thread failed (RuntimeError: event queue gone)"]
    assert spk.stats() == {"device": "USB Audio", "underflows": 0, "stream_errors": 1,
                           "last_error": errors.reasons[0]}
    spk.close()
    drains = Drains()
    spk.open(drains, errors)
    spk.write(ramp(100))
    be_the_device(pa.streams[1], 160, lambda: drains.count)
    spk.check_stream()
    assert len(errors.reasons) == 1
    spk.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_pyaudio_speaker_watchdog_reports_a_stalled_or_ended_writer_once():
    clock = StepClock()
    pa = FakePyAudio([USB_SPEAKER])
    errors = Reports()
    spk = PyAudioSpeaker(pyaudio_factory=pa, prime_ms=0, buffer_ms=10, clock=clock, stall_s=2.0)
    spk.open(lambda: None, errors)
    stream = pa.streams[0]
    clock.now_s += 60                # idle between replies for a minute: waiting for audio is no stall
    spk.check_stream()
    assert errors.reasons == []
    spk.write(ramp(16000))
    assert stream.wait_for(lambda s: len(s.written) == 3 and s.polls >= 6)   # waiting on the device ...
    spk.stop()                       # ... when a barge-in empties the queue: waiting for audio again
    assert stream.wait_for(lambda s: s.stops == 1)
    time.sleep(0.1)                  # let the writer get back to its wait for audio (nothing on the stream shows it)
    clock.now_s += 60
    spk.check_stream()
    assert errors.reasons == []
    polls = stream.polls
    spk.write(ramp(16000))
    # the device takes its three periods, then stops clocking (a USB DAC that went quiet without an
    # error); two polls without room: the writer has marked itself as waiting on the device
    assert stream.wait_for(lambda s: len(s.written) == 6 and s.polls >= polls + 6)
    clock.now_s += 1.9
    spk.check_stream()
    assert errors.reasons == []
    clock.now_s += 0.2
    spk.check_stream()
    spk.check_stream()
    assert errors.reasons == ["output 'USB Audio': no audio from the device for 2.1 s (device stalled)"]
    assert spk.pending_samples() > 0
    spk.close()

    before = set(threading.enumerate())
    spk.open(lambda: None, errors)
    writer = [t for t in threading.enumerate() if t not in before and t.name == "speaker"]
    assert len(writer) == 1
    stream = pa.streams[1]
    stream.fail_writes(ThreadKiller())   # the writer ends without reporting
    spk.write(ramp(160))
    writer[0].join(1.0)
    assert not writer[0].is_alive() and errors.reasons[1:] == []
    spk.check_stream()
    spk.check_stream()
    assert errors.reasons[1:] == [f"output 'USB Audio': audio thread ended {DEVICE_GONE}"]
    spk.close()
    clock.now_s += 60
    spk.check_stream()               # closed: nothing to watch, nothing reported
    assert len(errors.reasons) == 2 and spk.stats()["stream_errors"] == 2
