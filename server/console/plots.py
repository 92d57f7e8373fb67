"""Server-rendered SVG plots (no charting library): a fall's acceleration around the
impact, and a KPI series per day. Pure functions: numbers in, SVG markup out."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 640, 220, 36
MAX_POINTS = 2 * (WIDTH - 2 * PAD)
"""Most points a line plot draws, whatever its input: two (low, high) per pixel column."""
MAX_TICKS = 12
"""Most labelled ticks on a time axis."""
MAX_BARS = 366
"""Most bars a series plot draws (the latest ones): a year of days."""
LABEL_PX = 13
"""Text size of every label (SVG units; a plot is drawn at least at its own width, so at
least 12 CSS px): legible on a control-room screen."""
MET, MISSED, BAR = "#2e7d32", "#c62828", "#1a5fb4"
"""Bar colours: against a target (green met, red missed), or without one."""


@dataclass(frozen=True)
class Target:
    """A series' promise: `value` in the plot's unit (a share as %, 97.5), and whether
    the figure must reach it (a share) or stay under it (a time)."""

    value: float
    higher_is_better: bool = True
    label: Callable[[str], str] = lambda v: f"target {v}"
    """The line's caption in the reader's language, from the value with its unit."""

    def met(self, v: float) -> bool:
        return v >= self.value if self.higher_is_better else v <= self.value


def _open(label: str) -> str:
    """The plot's root; `label` names it for a screen reader (an image needs a name)."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" '
        f'aria-label="{escape(label)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">'
    )


def _text(x: float, y: float, text: str, size: int = LABEL_PX, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}">'
        f"{escape(text)}</text>"
    )


def _line(x1: float, y1: float, x2: float, y2: float, style: str) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" {style}/>'


def magnitudes(acc: Sequence[Sequence[float]]) -> list[float]:
    """|a| in g of each (x, y, z) sample in g; malformed samples are skipped."""
    out = []
    for sample in acc:
        if len(sample) == 3 and all(isinstance(v, int | float) for v in sample):
            m = math.sqrt(sum(float(v) ** 2 for v in sample))
            if math.isfinite(m):
                out.append(m)
    return out


def decimated(values: Sequence[float], most: int = MAX_POINTS) -> list[tuple[int, float]]:
    """(index, value) pairs to draw: all of them when there are at most `most`; else the
    lowest and highest of each of `most` // 2 equal runs, in order, so peaks survive."""
    n = len(values)
    if n <= most:
        return list(enumerate(values))
    runs = most // 2
    out: list[tuple[int, float]] = []
    for r in range(runs):
        lo, hi = r * n // runs, (r + 1) * n // runs
        run = range(lo, hi)
        i_min = min(run, key=values.__getitem__)
        i_max = max(run, key=values.__getitem__)
        out += [(i, values[i]) for i in sorted({i_min, i_max})]
    return out


def tick_step(span: float, most: int = MAX_TICKS) -> int:
    """Whole seconds between time ticks (1, 2, 5, 10, 20, 50…), so that a `span` (s) gets
    at most `most` of them."""
    assert math.isfinite(span), "a time axis spans a finite number of seconds"
    need = span / (most - 1)
    if need <= 1:
        return 1
    decade = 10 ** math.floor(math.log10(need))
    return next(int(k * decade) for k in (1, 2, 5, 10) if k * decade >= need)


def _scale(lo: float, hi: float, size: float, flip: bool) -> tuple[float, float]:
    span = hi - lo or 1.0
    k = size / span
    return (-k, size + lo * k) if flip else (k, -lo * k)


def acceleration_svg(
    hz: float,
    t0_ms: float,
    acc: Sequence[Sequence[float]],
    impact_ms: float | None,
    caption: str = "|a| (g), max {max} g",
    second: str = "s",
) -> Markup:
    """|a| (g) against seconds from the impact (or from the window's start), with a 1 g line
    and the impact marked. `caption` (with ``{max}``) and `second` are the reader's words
    (catalogue ``plot.acceleration``, ``unit.s``)."""
    mags = magnitudes(acc)
    if not mags or not (hz > 0 and math.isfinite(hz)):
        return Markup("")
    origin = impact_ms if impact_ms is not None else t0_ms
    drawn = decimated(mags)  # bounded work and output, however long the window

    def seconds(i: int) -> float:
        return (t0_ms + i * 1000.0 / hz - origin) / 1000.0

    x0, x1 = seconds(0), seconds(len(mags) - 1)
    if not math.isfinite(x1 - x0):  # an hz no device has (the upload bounds refuse it)
        return Markup("")
    if x1 <= x0:
        x1 = x0 + 1
    y1 = max(max(mags), 2.0)
    w, h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    kx, bx = _scale(x0, x1, w, False)
    ky, by = _scale(0.0, y1, h, True)

    def px(t: float) -> float:
        return PAD + kx * t + bx

    def py(v: float) -> float:
        return PAD + ky * v + by

    points = " ".join(f"{px(seconds(i)):.1f},{py(v):.1f}" for i, v in drawn)
    parts = [
        _open(caption.format(max=f"{max(mags):.1f}")),
        f'<rect x="{PAD}" y="{PAD}" width="{w}" height="{h}" fill="#fff" stroke="#ccc"/>',
        _line(PAD, py(1), PAD + w, py(1), 'class="one-g" stroke="#999" stroke-dasharray="4 3"'),
        _text(PAD + w + 4, py(1) + 4, "1 g"),
    ]
    if impact_ms is not None and x0 <= 0 <= x1:
        parts.append(_line(px(0), PAD, px(0), PAD + h, 'class="impact" stroke="#c00"'))
    step = tick_step(x1 - x0)
    for tick in range(math.ceil(x0 / step) * step, math.floor(x1) + 1, step):
        parts.append(_text(px(tick), HEIGHT - PAD + 16, f"{tick:+d} {second}", anchor="middle"))
    parts.append(_text(4, PAD - 8, caption.format(max=f"{max(mags):.1f}")))
    parts.append(f'<polyline fill="none" stroke="#1a5fb4" stroke-width="1.5" points="{points}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def series_svg(
    labels: Sequence[str],
    values: Sequence[float | None],
    unit: str,
    top: float | None = None,
    axis: Callable[[str, str], str] = lambda unit, top: f"{unit} (max {top})",
    target: Target | None = None,
) -> Markup:
    """Bars per label (a day), value in `unit` ("%" draws 0…100 from shares 0…1); a missing
    value is drawn as an empty slot marked "–". At most the last `MAX_BARS`. `axis`: the
    scale's caption in the reader's language, from the unit and the top value shown. With
    a `target`, a dashed line marks it and each bar is green where the day met it, red
    where it did not (class ``met``/``missed`` too, for whoever cannot tell the colours
    apart: the title says)."""
    if not labels:
        return Markup("")
    labels, values = labels[-MAX_BARS:], values[-MAX_BARS:]
    scaled = [None if v is None else (v * 100 if unit == "%" else v) for v in values]
    hi = top if top is not None else max([v for v in scaled if v is not None] or [1.0]) or 1.0
    if target is not None and top is None:
        hi = max(hi, target.value * 1.1)
    w, h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    slot = w / len(labels)
    caption = axis(unit, f"{hi:.0f}")
    parts = [
        _open(caption),
        _line(PAD, PAD + h, PAD + w, PAD + h, 'stroke="#999"'),
        _text(4, PAD - 8, caption),
    ]
    for i, (label, v) in enumerate(zip(labels, scaled, strict=True)):
        x = PAD + i * slot
        if v is None:
            parts.append(_text(x + slot / 2, PAD + h - 4, "–", anchor="middle"))
        else:
            bar = h * min(v, hi) / hi
            met = None if target is None else target.met(v)
            cls, fill = {None: ("", BAR), True: (" met", MET), False: (" missed", MISSED)}[met]
            parts.append(
                f'<rect class="bar{cls}" x="{x + slot * 0.15:.1f}" y="{PAD + h - bar:.1f}" '
                f'width="{slot * 0.7:.1f}" height="{bar:.1f}" fill="{fill}">'
                f"<title>{escape(label)}: {v:.0f} {escape(unit)}</title></rect>"
            )
            parts.append(_text(x + slot / 2, PAD + h - bar - 3, f"{v:.0f}", anchor="middle"))
        if len(labels) <= 16 or i % math.ceil(len(labels) / 16) == 0:
            parts.append(_text(x + slot / 2, HEIGHT - PAD + 16, label[5:], anchor="middle"))
    if target is not None:
        y = PAD + h - h * min(target.value, hi) / hi
        parts.append(
            _line(PAD, y, PAD + w, y, 'class="target" stroke="#1c2430" stroke-dasharray="6 4"')
        )
        said = target.label(f"{target.value:g} {unit}")
        parts.append(_text(PAD + w, y - 4, said, anchor="end"))
    parts.append("</svg>")
    return Markup("".join(parts))


def calendar_days(since_ms: int, until_ms: int, time_zone: str) -> list[str]:
    """Every ISO date in `time_zone` from `since_ms` to `until_ms` (epoch ms), so a plot
    shows the days without alarms as empty slots."""
    zone = ZoneInfo(time_zone)
    day = datetime.fromtimestamp(since_ms / 1000, UTC).astimezone(zone).date()
    last = datetime.fromtimestamp(until_ms / 1000, UTC).astimezone(zone).date()
    out = []
    while day <= last:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


def trend_svg(
    labels: Sequence[str],
    values: Sequence[float | None],
    unit: str,
    baseline: float | None = None,
    limit: float | None = None,
    recent_from: str | None = None,
) -> Markup:
    """A daily figure as a line of dots (a missing day breaks the line), for the family
    doctor's review: the baseline as a dashed line, the flag's limit as a red dotted one,
    and the recent window (labels from `recent_from`) shaded, so the plot shows the rule.
    `labels` are ISO days; at most the last `MAX_BARS`."""
    if not labels:
        return Markup("")
    labels, values = labels[-MAX_BARS:], values[-MAX_BARS:]
    known = [v for v in values if v is not None and math.isfinite(v)]
    marks = [m for m in (baseline, limit) if m is not None and math.isfinite(m)]
    if not known:
        return Markup("")
    lo, hi = min(known + marks), max(known + marks)
    pad = (hi - lo) * 0.1 or 1.0
    lo, hi = max(0.0, lo - pad), hi + pad
    w, h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    slot = w / len(labels)
    ky, by = _scale(lo, hi, h, True)

    def px(i: int) -> float:
        return PAD + (i + 0.5) * slot

    def py(v: float) -> float:
        return PAD + ky * v + by

    parts = [
        _open(f"{unit}, {labels[0]} – {labels[-1]}"),
        f'<rect x="{PAD}" y="{PAD}" width="{w}" height="{h}" fill="#fff" stroke="#ccc"/>',
        _text(4, PAD - 8, f"{unit} ({lo:.0f}–{hi:.0f})"),
    ]
    if recent_from is not None and recent_from in labels:
        x = PAD + labels.index(recent_from) * slot
        parts.append(
            f'<rect class="recent" x="{x:.1f}" y="{PAD}" width="{PAD + w - x:.1f}" '
            f'height="{h}" fill="#fdf0d5"/>'
        )
    if baseline is not None and math.isfinite(baseline):
        style = 'class="baseline" stroke="#555" stroke-dasharray="6 3"'
        parts.append(_line(PAD, py(baseline), PAD + w, py(baseline), style))
        parts.append(_text(PAD + w + 2, py(baseline) + 4, f"{baseline:g}", 10))
    if limit is not None and math.isfinite(limit):
        style = 'class="limit" stroke="#c00" stroke-dasharray="2 2"'
        parts.append(_line(PAD, py(limit), PAD + w, py(limit), style))
        parts.append(_text(PAD + w + 2, py(limit) + 4, f"{limit:g}", 10))
    run: list[str] = []
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        if v is None or not math.isfinite(v):
            if len(run) > 1:
                parts.append(_polyline(run))
            run = []
            continue
        run.append(f"{px(i):.1f},{py(v):.1f}")
        parts.append(
            f'<circle class="day" cx="{px(i):.1f}" cy="{py(v):.1f}" r="2" fill="#1a5fb4">'
            f"<title>{escape(label)}: {v:g} {escape(unit)}</title></circle>"
        )
    if len(run) > 1:
        parts.append(_polyline(run))
    step = max(1, math.ceil(len(labels) / 8))
    for i in range(0, len(labels), step):
        parts.append(_text(px(i), HEIGHT - PAD + 16, labels[i][5:], 10, "middle"))
    parts.append("</svg>")
    return Markup("".join(parts))


def _polyline(points: Sequence[str]) -> str:
    return (
        f'<polyline fill="none" stroke="#1a5fb4" stroke-width="1.2" points="{" ".join(points)}"/>'
    )
