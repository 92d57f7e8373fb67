"""Server-rendered SVG plots (no charting library): a fall's acceleration around the
impact, and a KPI series per day. Pure functions: numbers in, SVG markup out."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


def _open() -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">'
    )


def _text(x: float, y: float, text: str, size: int = 11, anchor: str = "start") -> str:
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
    hz: float, t0_ms: float, acc: Sequence[Sequence[float]], impact_ms: float | None
) -> Markup:
    """|a| (g) against seconds from the impact (or from the window's start), with a 1 g line
    and the impact marked."""
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
        _open(),
        f'<rect x="{PAD}" y="{PAD}" width="{w}" height="{h}" fill="#fff" stroke="#ccc"/>',
        _line(PAD, py(1), PAD + w, py(1), 'class="one-g" stroke="#999" stroke-dasharray="4 3"'),
        _text(PAD + w + 4, py(1) + 4, "1 g"),
    ]
    if impact_ms is not None and x0 <= 0 <= x1:
        parts.append(_line(px(0), PAD, px(0), PAD + h, 'class="impact" stroke="#c00"'))
    step = tick_step(x1 - x0)
    for tick in range(math.ceil(x0 / step) * step, math.floor(x1) + 1, step):
        parts.append(_text(px(tick), HEIGHT - PAD + 16, f"{tick:+d} s", anchor="middle"))
    parts.append(_text(4, PAD - 8, f"|a| (g), max {max(mags):.1f} g"))
    parts.append(f'<polyline fill="none" stroke="#1a5fb4" stroke-width="1.5" points="{points}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def series_svg(
    labels: Sequence[str],
    values: Sequence[float | None],
    unit: str,
    top: float | None = None,
    axis: Callable[[str, str], str] = lambda unit, top: f"{unit} (max {top})",
) -> Markup:
    """Bars per label (a day), value in `unit` ("%" draws 0…100 from shares 0…1); a missing
    value is drawn as an empty slot marked "–". At most the last `MAX_BARS`. `axis`: the
    scale's caption in the reader's language, from the unit and the top value shown."""
    if not labels:
        return Markup("")
    labels, values = labels[-MAX_BARS:], values[-MAX_BARS:]
    scaled = [None if v is None else (v * 100 if unit == "%" else v) for v in values]
    hi = top if top is not None else max([v for v in scaled if v is not None] or [1.0]) or 1.0
    w, h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    slot = w / len(labels)
    parts = [
        _open(),
        _line(PAD, PAD + h, PAD + w, PAD + h, 'stroke="#999"'),
        _text(4, PAD - 8, axis(unit, f"{hi:.0f}")),
    ]
    for i, (label, v) in enumerate(zip(labels, scaled, strict=True)):
        x = PAD + i * slot
        if v is None:
            parts.append(_text(x + slot / 2, PAD + h - 4, "–", anchor="middle"))
        else:
            bar = h * min(v, hi) / hi
            parts.append(
                f'<rect class="bar" x="{x + slot * 0.15:.1f}" y="{PAD + h - bar:.1f}" '
                f'width="{slot * 0.7:.1f}" height="{bar:.1f}" fill="#1a5fb4">'
                f"<title>{escape(label)}: {v:.0f} {escape(unit)}</title></rect>"
            )
            parts.append(_text(x + slot / 2, PAD + h - bar - 3, f"{v:.0f}", 10, "middle"))
        if len(labels) <= 16 or i % math.ceil(len(labels) / 16) == 0:
            parts.append(_text(x + slot / 2, HEIGHT - PAD + 16, label[5:], 10, "middle"))
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
