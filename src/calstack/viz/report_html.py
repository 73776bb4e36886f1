"""The report's HTML: one self-contained page from the measured sections (:mod:`calstack.viz.report`).

Pictures are PNGs embedded as ``data:`` URIs, the style is inline CSS; no script, no URL.
"""

from __future__ import annotations

import base64
import datetime
import html
import os

from .. import __version__
from ..processing.defects import DEFECT_DOCS
from ..stacking.anomalies import MIN_FRAMES, THRESHOLD

__all__ = ["render"]


_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 0 16px 48px; color: #1d1f21; background: #fff; }
h1 { margin: 24px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ccd; }
.meta, .note { color: #555; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #dde; padding: 3px 8px; text-align: right; }
th { background: #f3f4f8; } td.name, th.name { text-align: left; }
tr.flagged td { background: #ffe9e6; }
.anomalies { border: 2px solid #c0392b; background: #fff4f2; padding: 8px 16px; }
.clean { border: 2px solid #2e8b57; background: #f2fbf5; padding: 8px 16px; }
.figures { display: flex; flex-wrap: wrap; gap: 8px; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""


def _png_size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _img(png: bytes, alt: str) -> str:
    width, height = _png_size(png)
    data = base64.b64encode(png).decode("ascii")
    return (f'<img alt="{html.escape(alt)}" width="{width}" height="{height}" '
            f'src="data:image/png;base64,{data}">')


def _fraction(value) -> str:
    return "n/a" if value is None else f"{100 * value:.3f}%"


def _anomalies(sections) -> str:
    rule = (f"A frame is flagged when its level (median) or noise (robust std) is more than "
            f"{THRESHOLD:g} robust standard deviations of its group from the group's median, or "
            f"its fraction of rejected pixels is more than {THRESHOLD:g} above; groups of fewer "
            f"than {MIN_FRAMES} frames are not checked (calstack.stacking.anomalies).")
    items = [f'<li><a href="#master-{k}">{html.escape(s.label)}</a>: '
             f'<b>{html.escape(row.name)}</b>: {html.escape("; ".join(row.flags))}</li>'
             for k, s in enumerate(sections, 1) for row in s.flagged]
    if not items:
        return (f'<section class="clean" id="anomalies"><h2>No anomalous frames</h2>'
                f'<p class="note">{rule}</p></section>')
    return (f'<section class="anomalies" id="anomalies"><h2>Anomalous frames: {len(items)}</h2>'
            f'<ul>{"".join(items)}</ul><p class="note">{rule}</p></section>')


def _summary(sections) -> str:
    rows = "".join(
        f'<tr><td class="name"><a href="#master-{k}">{html.escape(s.label)}</a></td>'
        f'<td class="name">{html.escape(os.path.basename(s.path) or "(in memory)")}</td>'
        f'<td>{len(s.frames)}</td><td>{_fraction(s.keywords.get("CMBREJFR"))}</td>'
        f'<td>{s.reduction:.2f}</td><td>{_number(s.expected_reduction)}</td>'
        f'<td>{len(s.flagged)}</td></tr>'
        for k, s in enumerate(sections, 1))
    return ('<section id="masters"><h2>Masters</h2><table><tr><th class="name">master</th>'
            '<th class="name">file</th><th>frames</th><th>rejected</th><th>noise reduction</th>'
            f'<th>expected</th><th>flagged</th></tr>{rows}</table></section>')


def _calibrated(frames) -> str:
    """The calibrated frames (:class:`~calstack.pipeline.calibrate.CalibratedFrame`): masters
    used, level, noise, masked fraction."""
    if not frames:
        return ""
    unit = "e-" if frames[0].electrons else "ADU"

    def name(master):
        return html.escape(master.name) if master else "none"

    rows = "".join(
        f'<tr><td class="name" title="{html.escape(str(f.path))}">'
        f'{html.escape(os.path.basename(str(f.path)))}</td>'
        f'<td class="name">{name(f.choice.bias)}</td><td class="name">{name(f.choice.dark)}'
        f'{"" if f.choice.dark_factor == 1 else f" x{f.choice.dark_factor:.4g}"}</td>'
        f'<td class="name">{name(f.choice.flat)}</td><td>{f.level:.5g}</td><td>{f.noise:.4g}</td>'
        f'<td>{_fraction(f.masked_fraction)}</td></tr>' for f in frames)
    return (f'<section id="calibrated"><h2>Calibrated frames: {len(frames)}</h2><table><tr>'
            '<th class="name">frame</th><th class="name">bias</th><th class="name">dark</th>'
            f'<th class="name">flat</th><th>level ({unit})</th><th>robust std</th>'
            f'<th>masked</th></tr>{rows}</table><p class="note">Level and robust std of the '
            'values not masked, on a grid; masked: any MASK bit (missing, saturated, no usable '
            'flat).</p></section>')


def _camera(camera) -> str:
    """The camera measured by ``characterize``
    (:class:`~calstack.viz.report.CameraSection`): gain, read noise and linearity of each
    amplifier, its flat pairs, and the photon transfer picture."""
    if camera is None:
        return ""
    done = camera.characterized
    biases = html.escape(" + ".join(os.path.basename(b) for b in done.biases))
    parts = []
    for name, t in done.amplifiers:
        rows = "".join(
            f'<tr><td class="name">'
            f'{html.escape(" + ".join(os.path.basename(n) for n in p.names))}</td>'
            f'<td>{_number(p.exptime, "{:.3f}")}</td><td>{p.level:.1f}</td>'
            f'<td>{p.variance:.2f}</td><td>{p.gain:.4f}</td>'
            f'<td class="name">{_fitted(p)}</td></tr>'
            for p in t.pairs)
        linearity = ("" if t.linearity is None else
                     f"; levels within {100 * t.linearity:.2f}% of a line in exposure time")
        if t.saturation is not None:
            linearity += (f"; the curve turns over above {t.saturation:.1f} ADU over the "
                          "bias")
        who = "Camera" if name is None else f"Amplifier {html.escape(str(name))}"
        parts.append(
            f'<h2>{who}: gain {t.gain:.4f} e-/ADU, read noise {t.read_noise:.3f} e-</h2>'
            f'<p>Photon transfer from {len(t.pairs)} flat pair(s); read noise '
            f'{t.read_noise_adu:.3f} ADU from {biases}{linearity}.</p><table><tr>'
            '<th class="name">flat pair</th><th>exptime</th><th>level (ADU)</th>'
            '<th>variance (ADU²)</th><th>gain</th><th class="name">in the fit</th></tr>'
            f'{rows}</table>')
    return (f'<section id="camera">{"".join(parts)}<div class="figures">'
            f'{_img(camera.picture, "photon transfer curve")}</div></section>')


def _fitted(pair) -> str:
    return ("saturated: left out" if pair.saturated else
            "non-linear: left out" if pair.nonlinear else "fitted")


def _defects(masks) -> str:
    """Each bad-pixel mask (:class:`~calstack.pipeline.defects.DefectMask`): its classes
    counted, with what each class means."""
    if not masks:
        return ""
    parts = []
    for mask in masks:
        pixels = mask.shape[0] * mask.shape[1]
        rows = "".join(
            f'<tr><td class="name">{html.escape(name)}</td><td>{mask.counts[name]}</td>'
            f'<td>{_fraction(mask.counts[name] / pixels)}</td>'
            f'<td class="name">{html.escape(DEFECT_DOCS[name])}</td></tr>'
            for name in DEFECT_DOCS)
        parts.append(
            f'<h3>{html.escape(os.path.basename(str(mask.path)))}: {mask.counts["bad"]} bad '
            f'pixels ({_fraction(mask.counts["bad"] / pixels)})</h3><table><tr>'
            '<th class="name">class</th><th>pixels</th><th>fraction</th>'
            f'<th class="name">definition</th></tr>{rows}</table>')
    return (f'<section id="defects"><h2>Defect masks: {len(masks)}</h2>{"".join(parts)}'
            '<p class="note">A pixel may be in several classes; bad counts each once.</p>'
            '</section>')


def _number(value, form="{:.2f}") -> str:
    return "n/a" if value is None else form.format(value)


def _prepared_note(prepared) -> str:
    if not prepared:
        return ""
    return (f'<p class="note">Frames are shown and measured as they were combined: '
            f'{html.escape(prepared)}.</p>')


def _grid(step) -> str:
    return "every pixel" if step == 1 else f"a grid of one pixel in {step}x{step}"


def _master(k, s) -> str:
    """The HTML of master ``k``'s section ``s`` (a :class:`~calstack.viz.report.MasterSection`)."""
    keywords = ", ".join(f"{key} = {html.escape(str(value))}" for key, value in s.keywords.items())
    frame_rows = "".join(
        f'<tr class="{"flagged" if row.flags else "ok"}"><td>{i}</td>'
        f'<td class="name" title="{html.escape(row.path)}">{html.escape(row.name)}</td>'
        f'<td>{row.median:.5g}</td><td>{row.noise:.4g}</td><td>{_fraction(row.rejected)}</td>'
        f'<td class="name">{html.escape("; ".join(row.flags))}</td></tr>'
        for i, row in enumerate(s.frames, 1))
    expected = _number(s.expected_reduction)
    rule = {"average": "sqrt(N)", "median": "sqrt(2N/pi)"}.get(s.keywords.get("CMBMETH"), "")
    return f"""
<section class="master" id="master-{k}">
<h2>{html.escape(s.label)}</h2>
<p class="meta">{html.escape(s.path or "master in memory")}: {s.shape[0]}x{s.shape[1]},
{len(s.frames)} frames; {keywords}</p>{_prepared_note(s.prepared)}
<table><tr><th class="name">noise</th><th>a frame (median over frames)</th><th>master</th>
<th>reduction</th><th>expected {rule}</th></tr>
<tr><td class="name">pixel-to-pixel</td><td>{s.frame_pixel_noise:.4g}</td>
<td>{s.master_pixel_noise:.4g}</td><td>{s.reduction:.2f}</td><td>{expected}</td></tr>
<tr><td class="name">robust std</td><td>{s.frame_noise:.4g}</td><td>{s.master_noise:.4g}</td>
<td>{s.spread_reduction:.2f}</td><td>{expected}</td></tr></table>
<p class="note">Pixel-to-pixel noise: the robust std of differences between vertically
neighbouring pixels, over sqrt(2), where gradients, vignetting and column patterns cancel.
Fixed structure is signal and does not average down: where it dominates the robust std (bias
columns, vignetting, hot pixels), that reduction stays below the expectation.</p>
<div class="figures">
{_img(s.pictures["compare"], f"{s.label}: a single frame beside the master, same stretch")}
{_img(s.pictures["counts"], f"{s.label}: values kept per pixel")}
{_img(s.pictures["histogram"], f"{s.label}: histograms of a single frame and the master")}
</div>
<p class="note">Statistics and pictures on {_grid(s.step)}.
{100 * s.short_blocks:.2f}% of the count map's blocks hold a pixel where values were rejected
(or missing).</p>
<table><tr><th>#</th><th class="name">frame</th><th>median</th><th>robust std</th>
<th>rejected</th><th class="name">flag</th></tr>{frame_rows}</table>
</section>"""


def render(sections, *, calibrated=(), camera=None, defects=(), title="calstack report") -> str:
    """The report's HTML for computed sections (see :class:`Report`), the calibrated frames of
    a reduction, the camera measured (a :class:`~calstack.viz.report.CameraSection`) and
    defect masks (:class:`~calstack.pipeline.defects.DefectMask`)."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body = "".join(_master(k, s) for k, s in enumerate(sections, 1))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{len(sections)} master(s), written {now} by calstack {__version__}</p>
{_anomalies(sections)}
{_summary(sections)}
{_calibrated(calibrated)}
{_camera(camera)}
{_defects(defects)}
{body}
</body>
</html>
"""
