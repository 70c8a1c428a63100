"""fa-run in a subprocess with every frame slowed down and announced on stderr, so that a signal lands mid-run
(the signal tests of the contract suite and of the ROS bags)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import fa3d.runtime.aligner as a
if sys.argv[2] == "blob":  # the plumbing model's detector instead of the real one
    from tests.helpers.plumbing import BlobDetector
    a.make_detector = lambda spec: BlobDetector()
real = a.FaceAligner.process_video
def slow(self, frame, ts):
    time.sleep(0.05)
    print("frame", file=sys.stderr, flush=True)
    return real(self, frame, ts)
a.FaceAligner.process_video = slow
from fa3d.runtime.cli_run import main
sys.exit(main(sys.argv[3:]))
"""


def slow_fa_run(argv: list[str], blob_detector: bool = False) -> list[str]:
    """The command line: ``fa-run ARGV``, each frame 50 ms slower and announced with a ``frame`` line on stderr."""
    return [sys.executable, "-c", _SCRIPT, str(REPO), "blob" if blob_detector else "own", *argv]
