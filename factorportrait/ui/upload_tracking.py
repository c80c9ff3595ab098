"""The uploads tracked as soon as they arrive: the face found in the photo and in the clip (the
overlays and notes beside the upload slots), and the whole request tracked in the background
while the person looks at the page, so that the first Preview finds it tracked (the shared
TrackingCache keeps it). A part of ``service.Service``, which holds the cache, the landmarker,
the background thread and the lock these use."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

from ..conditioning import ConditioningSettings
from ..conditioning.preview import draw_face_mesh
from ..errors import InputError
from ..viewpoint import Trajectory
from . import texts

log = logging.getLogger(__name__)

# Uploads waiting to be tracked in the background at most; more are left to their Preview.
MAX_WAITING_TRACKING = 4


class UploadTracking:
    """Tracking of the uploads (mixed into ``service.Service``)."""

    def track_photo(self, path: str | None):
        """(overlay image, message) for an uploaded portrait."""
        if not path:
            return None, ""
        from ..io.media import read_image

        image = read_image(path)
        with self.tracking_cache.tracker(self.landmarker) as tracker:
            faces = tracker.track_faces(image)
        if not faces:
            raise InputError(texts.NO_FACE_IN_PHOTO)
        overlay = image
        for face in faces:
            overlay = draw_face_mesh(overlay, face.landmarks)
        return overlay, texts.faces_found(len(faces))

    def track_clip(self, path: str | None):
        """(overlay of the first frame with a face, message) for an uploaded driving clip."""
        if not path:
            return None, ""
        from ..io.media import read_video

        video = read_video(path, until_s=10.0)
        step = max(1, len(video.frames) // 12)
        with self.tracking_cache.tracker(self.landmarker) as tracker:
            for frame in video.frames[::step]:
                face = tracker.track_image(frame)
                if face is not None:
                    note = texts.clip_face_found(len(video.frames), video.duration, video.has_audio)
                    return draw_face_mesh(frame, face.landmarks), note
        raise InputError(texts.NO_FACE_IN_CLIP)

    def track_in_background(
        self,
        portrait: str | None,
        driving: str | None,
        settings: ConditioningSettings,
        trajectory: Trajectory | None = None,
    ) -> Future | None:
        """``track_for_preview`` on the service's own thread, so the page's queue is not held;
        None when ``MAX_WAITING_TRACKING`` uploads already wait (their Preview will track).
        Its failures are logged, never raised: it is work done ahead, and the Preview says
        what is wrong with the request."""
        with self._lock:
            if self._waiting_tracking >= MAX_WAITING_TRACKING:
                return None
            self._waiting_tracking += 1

        def track() -> bool:
            try:
                start = time.perf_counter()
                tracked = self.track_for_preview(portrait, driving, settings, trajectory)
                if tracked:
                    seconds = time.perf_counter() - start
                    log.info("uploads tracked ahead of their preview in %.2f s", seconds)
                return tracked
            except Exception:
                log.exception("tracking the uploads ahead of their preview failed")
                return False
            finally:
                with self._lock:
                    self._waiting_tracking -= 1

        return self._background.submit(track)

    def track_for_preview(
        self,
        portrait: str | None,
        driving: str | None,
        settings: ConditioningSettings,
        trajectory: Trajectory | None = None,
    ) -> bool:
        """Track the uploads as a preview with these settings will (the clip at the frames
        they pick), so the next Preview finds them tracked; run after an upload, while the
        person looks at the page. Whether it tracked: False when the request cannot be made
        yet (a driven mode without its clip, say), which the Preview will say."""
        try:
            self.conditioning(portrait, driving, settings, trajectory)
        except InputError:
            return False
        return True
