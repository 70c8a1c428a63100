"""fa3d.data.datasets: dataset readers yielding :class:`.samples.FaceSample` (numpy, scipy, OpenCV; no torch).

Torch-free data code that training (fa-train, fa-eval, fa-label) and calibration (fa-calib) both need; it sits
below both because calibration may not import training, and the runtime never imports it (the import contract
in pyproject.toml enforces it). :mod:`.synthetic` makes synthetic faces (tests, the smoke
training source, calibration's default set, export's parity fallback).

One module per format: :mod:`.w300lp` (300W-LP), :mod:`.aflw2000` (AFLW2000-3D), :mod:`.aflw` (AFLW
crops, 3DDFA protocol, aflw19k layout), :mod:`.biwi` (BIWI Kinect Head Pose), :mod:`.ibug_pts` (iBUG
.pts folders), :mod:`.labelled` (our labelled-folder format written by ``fa-label``) and :mod:`.mix`
(the default model's training mix). MATLAB-made coordinates are converted to 0-based pixels on load.
"""

from .aflw import AflwCrops, read_aflw_labels
from .aflw2000 import AFLW2000
from .biwi import Biwi, biwi_to_ypr, read_biwi_pose
from .ibug_pts import IbugPts, read_pts
from .labelled import LabelledFolder, read_labelled, write_labelled
from .mix import Aflw19kMix, MixWeights, load_aflw19k
from .w300lp import W300LP

__all__ = ["AFLW2000", "Aflw19kMix", "AflwCrops", "Biwi", "IbugPts", "LabelledFolder", "MixWeights", "W300LP",
           "biwi_to_ypr", "load_aflw19k", "read_aflw_labels", "read_biwi_pose", "read_labelled", "read_pts",
           "write_labelled"]
