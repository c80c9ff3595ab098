"""Identity kept: each generated frame's face-recognition embedding compared with the
portrait's, by the measure that fits the embedder, under a name that says which embedder made
it (README: Evaluation):

- ``DlibFaceEmbedder`` (the default, works offline): dlib's ResNet face descriptor (128-D,
  99.38% on LFW), its model files from the ``face-recognition-models`` package, run by the
  prebuilt ``dlib-bin`` wheel. The face is found by our MediaPipe tracker; dlib's 5-point
  predictor aligns it inside that box. Measured as dlib measures it: the descriptors' Euclidean
  distance (``dlib_distance``, lower is closer) and the share of frames that dlib's documented
  rule, a distance under 0.6, calls the same person (``dlib_same_person_share``). The cosine of
  these descriptors is compressed near 1 (another person scores about 0.8-0.9, the same person
  about 0.95), so it is not reported: it would read like ArcFace CSIM, where 0.9 means
  near-identical.
- ``ArcFaceEmbedder``: an ArcFace-class network (input 112x112 aligned on the standard five
  points, output an embedding) where the user has one; its cosine (``arcface_csim``) is the
  CSIM papers quote.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import InputError
from ..procrustes import umeyama
from . import metrics

DLIB_MODELS_PACKAGE = "face_recognition_models"
DLIB_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_FIVE_POINTS = "shape_predictor_5_face_landmarks.dat"
DLIB_SAME_PERSON_DISTANCE = 0.6  # dlib's documented threshold on descriptor distance

# How an embedder's embeddings are compared with the portrait's.
DISTANCE = "distance"  # Euclidean, lower is closer (dlib)
COSINE = "cosine"  # in [-1, 1], higher is closer (ArcFace: CSIM)

# The report's keys, each naming the embedder that made the figure.
DLIB_DISTANCE_KEY = "dlib_distance"
DLIB_SAME_PERSON_KEY = "dlib_same_person_share"
ARCFACE_CSIM_KEY = "arcface_csim"

# ArcFace's five reference points in its 112x112 crop (insightface: left eye, right eye, nose
# tip, left and right mouth corners, as seen in the image) and MediaPipe's landmarks for them
# (eyes: the mean of each eye's two corners).
ARCFACE_POINTS = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
MEDIAPIPE_FIVE_POINTS = ((33, 133), (362, 263), (1,), (61,), (291,))


class FaceEmbedder(Protocol):
    name: str  # the model, in the report's identity_model
    measure: str  # DISTANCE or COSINE
    key: str  # the report's key of the per-frame measure
    same_person_below: float | None  # a distance under which two faces are one person
    same_person_key: str | None  # the report's key of the share of frames judged so

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """An identity embedding (D,) of the face in ``image`` (H,W,3 uint8 RGB) whose
        MediaPipe landmarks (478,3, pixels) are given."""


def dlib_model_folder() -> Path | None:
    """Where face-recognition-models keeps its files, found without importing the package (its
    __init__ needs pkg_resources, which new setuptools no longer ship)."""
    spec = importlib.util.find_spec(DLIB_MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if (folder / DLIB_DESCRIPTOR).is_file() else None


class DlibFaceEmbedder:
    name = "dlib-resnet"
    measure = DISTANCE
    key = DLIB_DISTANCE_KEY
    same_person_below = DLIB_SAME_PERSON_DISTANCE
    same_person_key = DLIB_SAME_PERSON_KEY

    def __init__(self, model_folder: str | Path | None = None):
        try:
            import dlib
        except ImportError:
            raise InputError(
                'identity kept needs dlib, an extra: pip install -e ".[eval]" (README: Quick start)'
            ) from None
        folder = Path(model_folder) if model_folder else dlib_model_folder()
        if folder is None or not (folder / DLIB_DESCRIPTOR).is_file():
            raise InputError(
                'identity kept needs dlib\'s face models, an extra: pip install -e ".[eval]"'
            )
        self._dlib = dlib
        self._points = dlib.shape_predictor(str(folder / DLIB_FIVE_POINTS))
        self._descriptor = dlib.face_recognition_model_v1(str(folder / DLIB_DESCRIPTOR))

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        x0, y0 = np.floor(landmarks[:, :2].min(axis=0)).astype(int)
        x1, y1 = np.ceil(landmarks[:, :2].max(axis=0)).astype(int)
        box = self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        image = np.ascontiguousarray(image, dtype=np.uint8)
        shape = self._points(image, box)
        return np.asarray(self._descriptor.compute_face_descriptor(image, shape), np.float64)


class ArcFaceEmbedder:
    """Any ArcFace-class network: a callable from (B,3,112,112) float in [-1, 1] (RGB) to
    (B,D) embeddings (``load_arcface`` builds insightface's IResNet from safetensors)."""

    name = "arcface"
    measure = COSINE
    key = ARCFACE_CSIM_KEY
    same_person_below = None  # no threshold is assumed for a network the user brings
    same_person_key = None

    def __init__(self, network):
        self.network = network

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        import torch

        crop = arcface_crop(image, landmarks)
        tensor = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1
        parameter = next(iter(getattr(self.network, "parameters", list)()), None)
        if parameter is not None:
            tensor = tensor.to(parameter.device, parameter.dtype)
        with torch.no_grad():
            return self.network(tensor)[0].float().cpu().numpy().astype(np.float64)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5,2) pixels: eye centres, nose tip, mouth corners from MediaPipe landmarks."""
    return np.stack([landmarks[list(group), :2].mean(axis=0) for group in MEDIAPIPE_FIVE_POINTS])


def arcface_crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112x112 crop ArcFace networks are trained on: a similarity taking the face's five
    points onto ``ARCFACE_POINTS`` (least squares)."""
    # Least squares over all five points, as insightface aligns (no outlier rejection).
    try:
        scale, rotation, shift = umeyama(five_points(landmarks), ARCFACE_POINTS)
    except ValueError:
        raise InputError("identity: cannot align the face's five points") from None
    matrix = np.concatenate([scale * rotation, shift[:, None]], axis=1)
    return cv2.warpAffine(image, matrix, (112, 112), borderMode=cv2.BORDER_REPLICATE)


def compare_embeddings(embedder: FaceEmbedder, embeddings: np.ndarray, reference: np.ndarray):
    """Each embedding (F,D) against the reference's (D,) by the embedder's measure: dlib's
    descriptor distance, or an ArcFace network's cosine."""
    if embedder.measure == DISTANCE:
        return metrics.embedding_distance(embeddings, reference)
    if embedder.measure == COSINE:
        return metrics.cosine_similarity(embeddings, reference)
    raise ValueError(f"{embedder.name}: unknown measure {embedder.measure!r}")


def identity_to_reference(
    embedder: FaceEmbedder,
    reference: np.ndarray,
    reference_landmarks: np.ndarray,
    frames: np.ndarray,
    landmarks: list[np.ndarray | None],
) -> np.ndarray:
    """Per frame (F,): each frame's face embedding against the reference's by the embedder's
    measure (``compare_embeddings``); NaN where no face was tracked in the frame."""
    target = embedder.embed(reference, reference_landmarks)
    values = np.full(len(frames), np.nan)
    for index, (frame, points) in enumerate(zip(frames, landmarks, strict=True)):
        if points is not None:
            values[index] = compare_embeddings(
                embedder, embedder.embed(frame, points)[None], target
            )[0]
    return values


def same_person_share(distances: np.ndarray, below: float) -> float | None:
    """The share of the frames with a face (finite distances) whose distance is under
    ``below`` (dlib's rule: the same person); None when no frame has a face."""
    distances = np.asarray(distances, float)
    found = distances[np.isfinite(distances)]
    return float(np.mean(found < below)) if len(found) else None


def identity_keys(embedder: FaceEmbedder | None) -> tuple[str, ...]:
    """The report's keys an embedder fills (dlib's when there is none: the default's, so its
    columns say why they are empty)."""
    if embedder is None:
        return (DLIB_DISTANCE_KEY, DLIB_SAME_PERSON_KEY)
    return tuple(k for k in (embedder.key, embedder.same_person_key) if k is not None)


def default_embedder(arcface: str | Path | None = None) -> FaceEmbedder | None:
    """ArcFace from ``arcface`` (a safetensors file) when given, else dlib's when installed,
    else None (identity similarity is then reported as skipped)."""
    if arcface is not None:
        return ArcFaceEmbedder(load_arcface(arcface))
    try:
        return DlibFaceEmbedder()
    except InputError:
        return None


# -- ArcFace's IResNet (insightface's arcface_torch layout, so its state dicts load) ------------


def iresnet(layers: tuple[int, ...] = (3, 13, 30, 3), width: int = 64, embedding: int = 512):
    """insightface's IResNet (``iresnet100`` by default; (3, 4, 14, 3) is iresnet50): the
    module names follow arcface_torch's backbones, so its weights load by name."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, inplanes, planes, stride, downsample):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
            self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
            self.prelu = nn.PReLU(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
            self.downsample = downsample

        def forward(self, x):
            out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
            return out + (x if self.downsample is None else self.downsample(x))

    class IResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
            self.prelu = nn.PReLU(width)
            inplanes = width
            for index, count in enumerate(layers, 1):
                planes = width * 2 ** (index - 1)
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=1e-5)
                )
                blocks = [Block(inplanes, planes, 2, downsample)]
                blocks += [Block(planes, planes, 1, None) for _ in range(count - 1)]
                setattr(self, f"layer{index}", nn.Sequential(*blocks))
                inplanes = planes
            self.bn2 = nn.BatchNorm2d(inplanes, eps=1e-5)
            self.dropout = nn.Dropout(0.0)
            self.fc = nn.Linear(inplanes * 7 * 7, embedding)
            self.features = nn.BatchNorm1d(embedding, eps=1e-5)

        def forward(self, x):
            x = self.prelu(self.bn1(self.conv1(x)))
            for index in range(1, len(layers) + 1):
                x = getattr(self, f"layer{index}")(x)
            x = torch.flatten(self.dropout(self.bn2(x)), 1)
            return self.features(self.fc(x))

    return IResNet()


def load_arcface(path: str | Path):
    """IResNet weights from a safetensors file (arcface_torch's ``backbone.pth`` state dict,
    saved with safetensors; README: Evaluation). The depth is read from the weights' names."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (OSError, ValueError) as exc:
        raise InputError(f"--arcface {path}: cannot read it as safetensors ({exc})") from None
    layers = tuple(
        1 + max(int(k.split(".")[1]) for k in state if k.startswith(f"layer{index}."))
        for index in range(1, 5)
        if any(k.startswith(f"layer{index}.") for k in state)
    )
    if len(layers) != 4 or "conv1.weight" not in state or "fc.weight" not in state:
        raise InputError(f"--arcface {path}: not an IResNet state dict (arcface_torch layout)")
    network = iresnet(layers, state["conv1.weight"].shape[0], state["fc.weight"].shape[0])
    missing, unexpected = network.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"--arcface {path}: weights do not match an IResNet ({len(missing)} missing, "
            f"{len(unexpected)} unexpected)"
        )
    return network.eval()
