"""The HTML report and the image grid helper."""

from __future__ import annotations

import torch

from erasekit.eval import image_grid, write_html_report


def test_image_grid_layout():
    images = torch.rand(5, 3, 8, 8)
    grid = image_grid(images, nrow=3, padding=2)
    assert grid.size == (2 + 3 * 10, 2 + 2 * 10)  # (width, height): 3 columns, 2 rows
    assert grid.mode == "RGB"


def test_report_is_self_contained(tmp_path):
    before, after = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    results = [
        {
            "method": "none",
            "concept": "star",
            "metrics": {"erasure_rate": 0.05, "preserve_acc": 0.97, "fd_clf": 0.0, "preserve_acc_shape": 0.99},
        },
        {
            "method": "uce",
            "concept": "star",
            "metrics": {"erasure_rate": 0.91, "preserve_acc": 0.95, "fd_clf": 1.7, "preserve_acc_shape": 0.96},
        },
    ]
    path = write_html_report(
        tmp_path / "sub" / "report.html",
        "Erase <star>",
        results,
        [("star prompts", before, after, ["a red star", "a blue star", "a star & a heart"])],
        provenance={"erasekit": "0.1.0", "seeds": [0, 1]},
    )
    text = path.read_text()
    assert text.count("<img") == 6 and text.count("data:image/png;base64,") == 6
    for name in ("erasure_rate", "preserve_acc", "fd_clf", "preserve_acc_shape", "uce", "seeds"):
        assert name in text
    assert "Erase &lt;star&gt;" in text and "a star &amp; a heart" in text
    assert "http://" not in text and "https://" not in text  # no external assets
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary file left behind
