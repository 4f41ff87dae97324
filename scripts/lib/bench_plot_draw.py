"""The drawing half of `scripts/bench --plot`: a bench_plot.Timeline to a PNG (matplotlib, Agg).

One lane per kind of event, top to bottom in conversation order, times in ms from the press on
the x axis. The whole conversation on top; below, two zooms on the figures in the title: the
first 200 ms after the press (press -> first append) and the start of the reply (first delta ->
speaker). Main thread only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FLOOR_DBFS = -60.0   # the speaker lane's bottom
# (key, label, colour): top to bottom. Distinct colours: the test finds each lane by its colour.
LANES = [
    ("press", "button press", "#d62728"),
    ("gate", "local gate open", "#2ca02c"),
    ("appends", "append sent (wire)", "#1f77b4"),
    ("vad", "server VAD speech", "#9467bd"),
    ("response", "response.created / .done", "#ff7f0e"),
    ("deltas", "reply delta received (wire)", "#17becf"),
    ("speaker", "speaker level (−60…0 dBFS)", "#8c564b"),
    ("end", "conversation end", "#e377c2"),
]
LANE_HEIGHT = 0.7
ZOOM_MS = 200.0


@dataclass
class Drawn:
    path: Path
    size_px: tuple[int, int]                 # (width, height)
    artists: dict[str, list]                 # lane key -> the artists drawn in it (the full-length axes)
    bands_px: dict[str, tuple[int, int]]     # lane key -> (top row, bottom row) in the PNG (the same axes)
    x_px: tuple[int, int]                    # that axes' (left, right) columns
    colours: dict[str, str]


def draw(tl, path: str | Path, dpi: int = 100) -> Drawn:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    end_ms = tl.end_ms if tl.end_ms is not None else max([0.0, *tl.deltas_ms, *tl.appends_ms])
    fig = plt.figure(figsize=(14, 7.6), dpi=dpi)
    grid = fig.add_gridspec(2, 2, height_ratios=[1.55, 1], hspace=0.42, wspace=0.03)
    main = fig.add_subplot(grid[0, :])
    artists = _lanes(main, tl, end_ms, dpi)
    _frame(main, (-200, end_ms + 300), labels=True)
    main.set_xlabel("ms from the press (time.monotonic(); wire = a loopback tap between the daemon and the dev "
                    "server; speaker = parec on the speaker sink's monitor)", fontsize=9)
    main.set_title(title(tl), fontsize=10)
    zoom_press = fig.add_subplot(grid[1, 0])
    _lanes(zoom_press, tl, end_ms, dpi)
    _frame(zoom_press, (-20, ZOOM_MS), labels=True)
    zoom_press.set_title("zoom: the press", fontsize=9)
    zoom_reply = fig.add_subplot(grid[1, 1])
    _lanes(zoom_reply, tl, end_ms, dpi)
    start = min([*tl.response_created_ms[:1], *tl.deltas_ms[:1]], default=0.0)
    _frame(zoom_reply, (start - 20, start + ZOOM_MS), labels=False)
    zoom_reply.set_title("zoom: the reply starts", fontsize=9)
    fig.subplots_adjust(left=0.14, right=0.985, top=0.91, bottom=0.06)
    fig.canvas.draw()
    height_px = int(round(fig.get_figheight() * dpi))
    half, bands = LANE_HEIGHT / 2, {}
    for i, (key, _, _) in enumerate(LANES):
        y = len(LANES) - 1 - i
        (_, low), (_, high) = main.transData.transform([(0, y - half), (0, y + half)])
        bands[key] = (height_px - int(round(high)), height_px - int(round(low)))
    (left, _), (right, _) = main.transAxes.transform([(0, 0), (1, 0)])
    fig.savefig(path, dpi=dpi)
    size = (int(round(fig.get_figwidth() * dpi)), height_px)
    plt.close(fig)
    return Drawn(path, size, artists, bands, (int(left), int(right)), {key: c for key, _, c in LANES})


def _lanes(ax, tl, end_ms: float, dpi: int) -> dict[str, list]:
    y = {key: len(LANES) - 1 - i for i, (key, _, _) in enumerate(LANES)}
    colour = {key: c for key, _, c in LANES}
    artists: dict[str, list] = {key: [] for key, _, _ in LANES}
    half = LANE_HEIGHT / 2
    one_px_pt = 72 / dpi

    def ticks(key: str, xs: list[float]) -> None:
        if xs:   # exactly 1 px and not antialiased: every tick looks the same and keeps its colour
            artists[key].append(ax.vlines(xs, y[key] - half, y[key] + half, colors=colour[key],
                                          linewidth=one_px_pt, antialiased=False))

    def marks(key: str, xs: list[float], marker: str, size: float = 10, at: float = 0.0) -> None:
        if xs:
            artists[key] += ax.plot(xs, [y[key] + at] * len(xs), linestyle="none", marker=marker,
                                    markersize=size, color=colour[key])

    marks("press", [tl.press_ms], "v")
    if tl.gate_ms:
        artists["gate"].append(ax.broken_barh([(a, b - a) for a, b in tl.gate_ms], (y["gate"] - half, LANE_HEIGHT),
                                              facecolors=colour["gate"]))
    ticks("appends", tl.appends_ms)
    stops = tl.speech_stopped_ms + [end_ms] * len(tl.speech_started_ms)
    for start, stop in zip(tl.speech_started_ms, stops):
        artists["vad"].append(ax.broken_barh([(start, stop - start)], (y["vad"] - half / 2, half),
                                             facecolors=colour["vad"], alpha=0.45))
    marks("vad", tl.speech_started_ms, ">")
    marks("vad", tl.speech_stopped_ms, "<")
    marks("response", tl.response_created_ms, "o")
    marks("response", tl.response_done_ms, "s")
    ticks("deltas", tl.deltas_ms)
    if len(tl.level_ms):
        keep = (tl.level_ms >= -200) & (tl.level_ms <= end_ms + 300)
        height = (tl.level_dbfs[keep] - FLOOR_DBFS) / -FLOOR_DBFS * LANE_HEIGHT
        base = y["speaker"] - half
        # from each window's read time on: never drawn before the monitor could have had it
        artists["speaker"].append(ax.fill_between(tl.level_ms[keep], base, base + height, color=colour["speaker"],
                                                  linewidth=0, step="post"))
    for at_ms, cue in tl.earcons_ms:   # what the daemon says it played, over what the speaker played
        artists["speaker"] += ax.plot([at_ms], [y["speaker"] + half], linestyle="none", marker="v", markersize=5,
                                      color="black")
        artists["speaker"].append(ax.annotate(f"earcon: {cue}", (at_ms, y["speaker"] + half), xytext=(3, 2),
                                              textcoords="offset points", fontsize=7, annotation_clip=True))
    if tl.first_sound_ms is not None:
        marks("speaker", [tl.first_sound_ms], "|", size=14)
    if tl.end_ms is not None:
        marks("end", [tl.end_ms], "X")
    return artists


def _frame(ax, xlim: tuple[float, float], labels: bool) -> None:
    ax.set_yticks(range(len(LANES)), [label for _, label, _ in reversed(LANES)] if labels else [])
    ax.tick_params(axis="y", labelsize=8 if labels else 0, length=0)
    ax.set_ylim(-0.6, len(LANES) - 0.4)
    ax.set_xlim(*xlim)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def title(tl) -> str:
    lat = tl.latencies()
    f = lambda v: f"{v:.1f} ms" if v is not None else "n/a"   # noqa: E731
    return (f"one conversation on the PulseAudio rig: press → first append {f(lat['press_to_first_append_ms'])} "
            f"(wire {f(lat['press_to_first_append_wire_ms'])}); first reply delta → written to the speaker "
            f"{f(lat['delta_to_speaker_ms'])}, first audible on its monitor {f(lat['first_delta_to_audible_ms'])}\n"
            f"{len(tl.appends_ms)} appends, {len(tl.deltas_ms)} reply deltas; "
            f"{tl.end_reason or 'no end seen'}")
