"""Pose-pretrained CSPNeXt backbones of the published recipe: registry, download, checks, loading.

Every RTMPose whole-body config and every DWPose stage-1 student of mmpose starts its backbone
from a pose-pretrained CSPNeXt (SPEC section 13); the head alone is trained from scratch. The
files are mmpose's, named ``<name>-<first 8 hex digits of the file's sha256>_<date>.pth``.

``model.init_checkpoint`` takes a registered name (``cspnext-tiny_udp-aic-coco_210e-256x192``),
its file name, or a path. A registered file is looked for in ``$DWPOSE_CTRL_HOME``, then in
torch's hub cache (``torch.hub.get_dir()/checkpoints``), and downloaded there on first use; a
file whose name carries mmpose's hash suffix has that sha256 prefix checked before use.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dwpose_ctrl.weights import HOME_ENV, ModelFileError, sha256_of

if TYPE_CHECKING:
    import torch
    from torch import nn

MMPOSE_DOWNLOADS = "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/"
LOCAL_COPY_FLAG = "--set model.init_checkpoint='/path/to/{filename}'"
_HASH_SUFFIX = re.compile(r"-(?P<prefix>[0-9a-f]{8})(?:_\d{8})?\.pth$")


@dataclass(frozen=True)
class PretrainedBackbone:
    """One published pose-pretrained CSPNeXt checkpoint (an mmpose top-down model)."""

    name: str
    size: str
    filename: str

    @property
    def url(self) -> str:
        return MMPOSE_DOWNLOADS + self.filename

    @property
    def sha256_prefix(self) -> str:
        return sha256_prefix_in_name(self.filename)


# The checkpoints mmpose's RTMPose whole-body configs load (`init_cfg` of the backbone).
PRETRAINED_BACKBONES: dict[str, PretrainedBackbone] = {
    entry.name: entry
    for entry in (
        PretrainedBackbone("cspnext-tiny_udp-aic-coco_210e-256x192", "t",
                           "cspnext-tiny_udp-aic-coco_210e-256x192-cbed682d_20230130.pth"),
        PretrainedBackbone("cspnext-s_udp-aic-coco_210e-256x192", "s",
                           "cspnext-s_udp-aic-coco_210e-256x192-92f5a029_20230130.pth"),
        PretrainedBackbone("cspnext-m_udp-aic-coco_210e-256x192", "m",
                           "cspnext-m_udp-aic-coco_210e-256x192-f2f7d6f6_20230130.pth"),
        PretrainedBackbone("cspnext-l_udp-aic-coco_210e-256x192", "l",
                           "cspnext-l_udp-aic-coco_210e-256x192-273b7631_20230130.pth"),
        PretrainedBackbone("cspnext-x_udp-body7_210e-384x288", "x",
                           "cspnext-x_udp-body7_210e-384x288-d28b58e6_20230529.pth"),
    )
}  # fmt: skip


def pretrained_backbone_for(size: str) -> PretrainedBackbone:
    """The published pretrained backbone of an RTMPose size (t, s, m, l, x)."""
    for entry in PRETRAINED_BACKBONES.values():
        if entry.size == size:
            return entry
    raise ValueError(f"no published pretrained backbone for RTMPose size {size!r}")


def sha256_prefix_in_name(filename: str) -> str | None:
    """The 8 hex digits mmpose appends to a checkpoint's name (``...-cbed682d_20230130.pth``)."""
    match = _HASH_SUFFIX.search(filename)
    return match.group("prefix") if match else None


def check_sha256_prefix(path: Path) -> Path:
    """Raise :class:`ModelFileError` when ``path``'s sha256 does not start with its name's prefix."""
    prefix = sha256_prefix_in_name(path.name)
    if prefix is not None and not sha256_of(path).startswith(prefix):
        raise ModelFileError(
            f"{path} is corrupt or not the published file: its sha256 starts with {sha256_of(path)[:8]}, "
            f"its name says {prefix}; delete it and download it again, or pass a good copy with "
            + LOCAL_COPY_FLAG.format(filename=path.name)
        )
    return path


def _registered(text: str) -> PretrainedBackbone | None:
    for entry in PRETRAINED_BACKBONES.values():
        if text in (entry.name, entry.filename):
            return entry
    return None


def _hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _download(entry: PretrainedBackbone, target: Path) -> Path:
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(entry.url, str(target), hash_prefix=None, progress=False)
    except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
        raise ModelFileError(
            f"the pretrained backbone {entry.filename} is not on this machine and cannot be downloaded "
            f"from {entry.url} ({error}). Download it where there is a network and pass it with "
            f"{LOCAL_COPY_FLAG.format(filename=entry.filename)} (or put it in ${HOME_ENV}); without a "
            "pretrained backbone, warm one up first: python -m training warmup"
        ) from error
    try:
        return check_sha256_prefix(target)
    except ModelFileError:
        target.unlink()
        raise


def resolve_backbone_checkpoint(checkpoint: str | os.PathLike) -> Path:
    """A local file for ``model.init_checkpoint``: a path, or a registered name downloaded on first use."""
    text = os.fspath(checkpoint)
    path = Path(text)
    if path.is_file():
        return check_sha256_prefix(path)
    entry = _registered(text)
    if entry is None:
        names = ", ".join(PRETRAINED_BACKBONES)
        raise ModelFileError(f"init checkpoint {text} does not exist; give a file path or one of: {names}")
    for folder in (os.environ.get(HOME_ENV), _hub_checkpoints()):
        if folder and (Path(folder) / entry.filename).is_file():
            return check_sha256_prefix(Path(folder) / entry.filename)
    return _download(entry, _hub_checkpoints() / entry.filename)


def load_backbone(backbone: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load the ``backbone.*`` tensors of a (mmpose-named) state dict into ``backbone``, strictly.

    Every backbone tensor must be there with its shape, and no other ``backbone.*`` tensor; the
    checkpoint's head (mmpose's pretrained CSPNeXt files carry a heatmap head) is ignored.
    """
    tensors = {key[len("backbone.") :]: value for key, value in state.items() if key.startswith("backbone.")}
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tensors[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source} does not fit this CSPNeXt backbone: {len(missing)} tensors missing "
            f"(e.g. {['backbone.' + k for k in missing[:3]]}), {len(unexpected)} unexpected "
            f"(e.g. {['backbone.' + k for k in unexpected[:3]]}), {len(wrong)} of another shape "
            f"(e.g. {['backbone.' + k for k in wrong[:3]]}); is it the checkpoint of another model size?"
        )
    backbone.load_state_dict(tensors, strict=True)
