"""Each photo's scene kept between requests (the web service's geometric runs): what a scene is
built from but the driving expression, as a content key, and a small thread-safe cache."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from ...head_pose.canonical import NUM_MESH_VERTICES
from .scene import Scene, build_scene, expression_offsets


def portrait_key(conditioning) -> str:
    """What a scene is made of but the driving expression: the framed portrait, its landmarks,
    its camera and the template (a second request with the same photo and size, in any mode
    or with any clip, builds the same scene but for ``face_offsets``)."""
    from ...tracking.cache import content_key

    template = conditioning.head_template
    c2w = (
        conditioning.reference_c2w
        if conditioning.reference_c2w is not None
        else conditioning.c2w[0]
    )
    return content_key(
        conditioning.reference,
        np.asarray(conditioning.source_landmarks, dtype=np.float64),
        np.asarray(conditioning.K[0], dtype=np.float64),
        np.asarray(c2w, dtype=np.float64),
        np.asarray(template.head_vertices, dtype=np.float64),
        np.asarray(template.body_vertices, dtype=np.float64),
    )


class SceneCache:
    """Scenes by portrait (``portrait_key``), the most recent ``size`` kept: GrabCut, the
    inpainting and the colour solve (0.2-1 s) are done once per photo and size, not per
    request. Thread-safe; the expression is set per request (``scene_for``)."""

    def __init__(self, size: int = 8):
        self.size = size
        self.hits = 0
        self._scenes: OrderedDict[str, Scene] = OrderedDict()
        self._lock = threading.Lock()

    def scene_for(self, conditioning) -> Scene:
        key = portrait_key(conditioning)
        with self._lock:
            scene = self._scenes.get(key)
            if scene is not None:
                self._scenes.move_to_end(key)
                self.hits += 1
        if scene is None:
            scene = build_scene(conditioning)
            with self._lock:
                self._scenes[key] = scene
                while len(self._scenes) > self.size:
                    self._scenes.popitem(last=False)
            return scene
        face = scene.head_vertices[:NUM_MESH_VERTICES]
        return replace(scene, face_offsets=expression_offsets(conditioning, face))
