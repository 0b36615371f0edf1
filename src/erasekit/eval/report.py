"""Self-contained HTML reports: a metric table and before/after image rows, in one file with no external assets.

A report is meant to be mailed, attached to an issue or archived next to an edit file, so everything it shows
(styles and images) is inlined; images travel as base64 PNG data URIs.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..atomic import atomic_write_text
from ..images import to_uint8_hwc
from .toy_suite import HEADLINE_METRICS

# Metrics shown in the main table, in this order, when present; any others go in the "all metrics" table.
PRIMARY_METRICS = (
    *HEADLINE_METRICS,
    "asr_unlearndiffatk",
    "asr_ring-a-bell",
    "asr_replay",
    "erase_seconds",
)
# Fields of a result dict that say what was evaluated rather than how it scored.
_IDENTITY_FIELDS = ("method", "concept", "model")
# The toy world's images are 32x32: too small to judge by eye at their native size.
_TARGET_DISPLAY_PX = 96

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
.meta { color: #666; font-size: .85rem; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: .3rem .6rem; text-align: right; }
th { background: #f5f5f7; }
td.id, th.id { text-align: left; }
dl.provenance { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; font-size: .85rem; }
dl.provenance dt { font-weight: 600; }
dl.provenance dd { margin: 0; font-family: ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; }
.row-label { font-weight: 600; margin: .6rem 0 .2rem; }
.images { display: flex; flex-wrap: wrap; gap: .5rem; }
figure { margin: 0; width: 7rem; }
figure img { image-rendering: pixelated; border: 1px solid #ccc; display: block; }
figcaption { font-size: .7rem; color: #444; line-height: 1.2; margin-top: .15rem; }
details { margin: .5rem 0; }
svg { font-family: system-ui, sans-serif; font-size: 11px; margin: .5rem 1rem .5rem 0; }
.plots { display: flex; flex-wrap: wrap; align-items: flex-start; }
"""


# ------------------------------------------------------------------------------------------------- images


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> Image.Image:
    """Tile a batch ``(N, 3, H, W)`` in [0, 1] into one PIL image, ``nrow`` images per row.

    Same layout as ``torchvision.utils.make_grid``, without the dependency.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (N, C, H, W), got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    nrow = max(1, min(nrow, n)) if n else 1
    ncol = max(1, math.ceil(n / nrow))
    fill = int(round(pad_value * 255))
    canvas = np.full((padding + ncol * (h + padding), padding + nrow * (w + padding), 3), fill, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        canvas[y : y + h, x : x + w] = to_uint8_hwc(images[i])
    return Image.fromarray(canvas)


def _upscaled(image: Image.Image, target_px: int = _TARGET_DISPLAY_PX) -> Image.Image:
    # Nearest-neighbour keeps the pixels honest: smoothing would hide exactly the artefacts a reader looks for.
    scale = max(1, round(target_px / max(image.size)))
    if scale == 1:
        return image
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def _png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --------------------------------------------------------------------------------------------------- html


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _missing(value) -> bool:
    """No number to show: ``None`` (a ``null`` read back from JSON) or NaN (a rate over nothing)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _format_value(value) -> str:
    if _missing(value):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.3f}"
    return str(value)


def _metrics_of(result: Mapping) -> dict:
    """A result's metrics: its ``metrics`` mapping, or else its top-level numbers."""
    if isinstance(result.get("metrics"), Mapping):
        return dict(result["metrics"])
    return {k: v for k, v in result.items() if k not in _IDENTITY_FIELDS and isinstance(v, (int, float))}


def _metric_table(results: Sequence[Mapping], names: list[str]) -> str:
    identity = [f for f in _IDENTITY_FIELDS if any(f in r for r in results)]
    head = "".join(f'<th class="id">{_esc(f)}</th>' for f in identity) + "".join(f"<th>{_esc(n)}</th>" for n in names)
    rows = []
    for result in results:
        metrics = _metrics_of(result)
        cells = "".join(f'<td class="id">{_esc(result.get(f, ""))}</td>' for f in identity)
        cells += "".join(f"<td>{_esc(_format_value(metrics.get(n)))}</td>" for n in names)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _provenance_block(provenance: Mapping | None) -> str:
    entries = dict(provenance or {})
    entries.setdefault("generated", datetime.now(UTC).isoformat(timespec="seconds"))
    items = []
    for key, value in entries.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
        items.append(f"<dt>{_esc(key)}</dt><dd>{_esc(text)}</dd>")
    return f'<dl class="provenance">{"".join(items)}</dl>'


def _image_row(label: str, images: torch.Tensor | None, captions: Sequence[str]) -> str:
    if images is None or len(images) == 0:
        return f'<div class="row-label">{_esc(label)}</div><p class="meta">no images</p>'
    figures = []
    for i in range(images.shape[0]):
        uri = _png_data_uri(_upscaled(Image.fromarray(to_uint8_hwc(images[i]))))
        text = captions[i] if i < len(captions) else ""
        figures.append(
            f'<figure><img src="{uri}" alt="{_esc(text)}" title="{_esc(text)}">'
            f"<figcaption>{_esc(text)}</figcaption></figure>"
        )
    return f'<div class="row-label">{_esc(label)}</div><div class="images">{"".join(figures)}</div>'


def write_html_report(
    path: str | os.PathLike,
    title: str,
    results: Sequence[Mapping],
    grids: Sequence[tuple[str, torch.Tensor | None, torch.Tensor | None, Sequence[str]]] = (),
    provenance: Mapping | None = None,
    sections: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write a self-contained HTML report and return its path.

    Args:
        path: where to write the page (parent folders are created).
        title: the page's title and heading.
        results: one dict per table row; ``method``, ``concept`` and ``model`` fields identify the row, and the
            numbers come from its ``metrics`` mapping (e.g. ``ToySuiteResult.to_json()`` plus a ``method``).
        grids: ``(heading, before, after, prompts[, after_prompts])``: two image batches ``(N, 3, H, W)`` in
            [0, 1] made with the same seeds, shown as a "before" row over an "after" row, captioned by ``prompts``
            (the "after" row by ``after_prompts`` when given: an attack's rewritten prompts).
        provenance: what produced the numbers (versions, model, method, seeds, ...), shown under the title.
        sections: extra ``(heading, html)`` blocks after the metrics (plots: see :func:`svg_scatter`,
            :func:`svg_bars`); the html is trusted, the heading escaped.
    """
    path = Path(path)
    results = list(results)
    all_names: list[str] = []
    for result in results:
        for name in _metrics_of(result):
            if name not in all_names:
                all_names.append(name)
    primary = [n for n in PRIMARY_METRICS if n in all_names] or all_names

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        "<h2>Provenance</h2>",
        _provenance_block(provenance),
        "<h2>Metrics</h2>",
    ]
    if results:
        parts.append(_metric_table(results, primary))
        if len(all_names) > len(primary):
            parts.append(f"<details><summary>All metrics</summary>{_metric_table(results, all_names)}</details>")
    else:
        parts.append('<p class="meta">no results</p>')

    for heading, block in sections:
        parts.append(f"<h2>{_esc(heading)}</h2>")
        parts.append(block)

    if grids:
        parts.append("<h2>Samples</h2>")
        parts.append('<p class="meta">Each "after" image uses the same prompt and seed as the one above it.</p>')
    for heading, before, after, prompts, *after_prompts in grids:
        parts.append(f"<h3>{_esc(heading)}</h3>")
        parts.append(_image_row("before", before, list(prompts)))
        parts.append(_image_row("after", after, list(after_prompts[0] if after_prompts else prompts)))
    parts.append("</body></html>\n")

    atomic_write_text(path, "\n".join(parts))
    return path


# -------------------------------------------------------------------------------------------------- plots

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
_MARKERS = ("circle", "square", "diamond", "triangle")


def _marker(kind: str, x: float, y: float, colour: str) -> str:
    r = 5
    if kind == "square":
        return f'<rect x="{x - r}" y="{y - r}" width="{2 * r}" height="{2 * r}" fill="{colour}"/>'
    if kind == "diamond":
        return f'<polygon points="{x},{y - r - 1} {x + r + 1},{y} {x},{y + r + 1} {x - r - 1},{y}" fill="{colour}"/>'
    if kind == "triangle":
        return f'<polygon points="{x},{y - r - 1} {x + r + 1},{y + r} {x - r - 1},{y + r}" fill="{colour}"/>'
    return f'<circle cx="{x}" cy="{y}" r="{r}" fill="{colour}"/>'


def _legend(items: list[tuple[str, str]], x: float, y: float) -> str:
    out = []
    for i, (label, swatch) in enumerate(items):
        out.append(f'<g transform="translate({x},{y + 16 * i})">{swatch}<text x="12" y="4">{_esc(label)}</text></g>')
    return "".join(out)


def svg_scatter(points: Sequence[tuple[str, str, float, float]], title: str, x_label: str, y_label: str) -> str:
    """An inline SVG scatter plot on [0, 1] x [0, 1]: ``(series, group, x, y)``, colour by series, marker by
    group (e.g. method and concept). Points with a missing coordinate are left out and counted in the title."""
    width, height, left, top, plot = 460, 300, 46, 26, 230
    series = list(dict.fromkeys(p[0] for p in points))
    groups = list(dict.fromkeys(p[1] for p in points))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<text x="{left}" y="16" font-weight="600">{_esc(title)}</text>',
    ]
    y0 = top + plot
    for i in range(6):
        v = i / 5
        gx, gy = left + v * plot, y0 - v * plot
        parts.append(f'<line x1="{gx}" y1="{top}" x2="{gx}" y2="{y0}" stroke="#eee"/>')
        parts.append(f'<line x1="{left}" y1="{gy}" x2="{left + plot}" y2="{gy}" stroke="#eee"/>')
        parts.append(f'<text x="{gx}" y="{y0 + 14}" text-anchor="middle">{v:.1f}</text>')
        parts.append(f'<text x="{left - 6}" y="{gy + 4}" text-anchor="end">{v:.1f}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="none" stroke="#999"/>')
    parts.append(f'<text x="{left + plot / 2}" y="{y0 + 32}" text-anchor="middle">{_esc(x_label)}</text>')
    parts.append(
        f'<text transform="translate(12,{top + plot / 2}) rotate(-90)" text-anchor="middle">{_esc(y_label)}</text>'
    )
    missing = 0
    for name, group, x, y in points:
        if _missing(x) or _missing(y):
            missing += 1
            continue
        colour = _PALETTE[series.index(name) % len(_PALETTE)]
        marker = _MARKERS[groups.index(group) % len(_MARKERS)]
        px, py = left + min(max(x, 0), 1) * plot, y0 - min(max(y, 0), 1) * plot
        parts.append(
            f"<g><title>{_esc(f'{name} / {group}: {x:.3f}, {y:.3f}')}</title>{_marker(marker, px, py, colour)}</g>"
        )
    legend = [(s, _marker("circle", 0, 0, _PALETTE[i % len(_PALETTE)])) for i, s in enumerate(series)]
    legend += [(g, _marker(_MARKERS[i % len(_MARKERS)], 0, 0, "#555")) for i, g in enumerate(groups)]
    parts.append(_legend(legend, left + plot + 24, top + 6))
    if missing:
        parts.append(f'<text x="{left}" y="{height - 2}" fill="#a00">{missing} point(s) without a value</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(categories: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str, y_label: str) -> str:
    """An inline SVG grouped bar chart on [0, 1]: one group per category, one bar per series (missing
    values drawn as a gap marked "n/a")."""
    names = list(series)
    n_cat, n_ser = max(1, len(categories)), max(1, len(names))
    bar, gap, left, top, plot_h = 14, 18, 46, 26, 200
    plot_w = n_cat * (n_ser * bar + gap)
    width, height = left + plot_w + 170, top + plot_h + 70
    y0 = top + plot_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<text x="{left}" y="16" font-weight="600">{_esc(title)}</text>',
    ]
    for i in range(6):
        v = i / 5
        gy = y0 - v * plot_h
        parts.append(f'<line x1="{left}" y1="{gy}" x2="{left + plot_w}" y2="{gy}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{gy + 4}" text-anchor="end">{v:.1f}</text>')
    parts.append(
        f'<text transform="translate(12,{top + plot_h / 2}) rotate(-90)" text-anchor="middle">{_esc(y_label)}</text>'
    )
    for c, category in enumerate(categories):
        x0 = left + gap / 2 + c * (n_ser * bar + gap)
        for s, name in enumerate(names):
            values = list(series[name])
            value = values[c] if c < len(values) else None
            x = x0 + s * bar
            colour = _PALETTE[s % len(_PALETTE)]
            if _missing(value):
                parts.append(f'<text x="{x + bar / 2}" y="{y0 - 4}" text-anchor="middle" font-size="8">n/a</text>')
                continue
            h = min(max(value, 0), 1) * plot_h
            parts.append(
                f'<rect x="{x}" y="{y0 - h}" width="{bar - 2}" height="{h}" fill="{colour}">'
                f"<title>{_esc(f'{category} / {name}: {value:.3f}')}</title></rect>"
            )
        parts.append(
            f'<text transform="translate({x0 + n_ser * bar / 2},{y0 + 12}) rotate(30)" '
            f'font-size="10">{_esc(category)}</text>'
        )
    parts.append(f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#999"/>')
    legend = [
        (name, f'<rect x="-5" y="-5" width="10" height="10" fill="{_PALETTE[i % len(_PALETTE)]}"/>')
        for i, name in enumerate(names)
    ]
    parts.append(_legend(legend, left + plot_w + 20, top + 6))
    parts.append("</svg>")
    return "".join(parts)
