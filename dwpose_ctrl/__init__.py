"""dwpose-ctrl: DWPose whole-body keypoints and OpenPose-style ControlNet maps."""

from dwpose_ctrl.detector import DWposeDetector
from dwpose_ctrl.keypoints import Person

__all__ = ["DWposeDetector", "Person"]
__version__ = "0.1.0"
