"""Helpers of the hostile tests (a unique module name: ``conftest`` is ambiguous across test folders)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CHECKPOINT = REPO / "export" / "assets" / "default" / "model.pt"


def one_line_error(err: str, prog: str) -> str:
    """The stderr of a CLI that failed cleanly: one line, prefixed by the program, no traceback."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}:"), err
    return lines[0]


def no_partials(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob("*") if "partial" in p.name)
