"""Makes assets/example_driving.mp4 from assets/example_portrait.jpg (from the repo root:
``python -m assets.make_example_clip``). The project's own clip: the public-domain portrait moved
by smooth similarity transforms (head roll, sway, a slow push-in), so it carries head motion for
the tracker but no expression change. Deterministic: the same file every time."""

from pathlib import Path

import cv2
import numpy as np

from factorportrait.io import write_video
from factorportrait.io.media import read_image

ASSETS = Path(__file__).resolve().parent
FPS, SECONDS, SIZE = 16, 3.5, 384


def main() -> None:
    portrait = read_image(ASSETS / "example_portrait.jpg")
    height, width = portrait.shape[:2]
    centre = (width * 0.47, height * 0.33)  # about the face
    frames = []
    for i in range(int(FPS * SECONDS)):
        phase = 2 * np.pi * i / (FPS * SECONDS)
        roll = 10.0 * np.sin(phase)
        scale = (1.0 + 0.06 * (1 - np.cos(phase))) * SIZE / (0.75 * width)
        matrix = cv2.getRotationMatrix2D(centre, roll, scale)
        matrix[:, 2] += (SIZE / 2 - centre[0] + 12 * np.sin(2 * phase), SIZE / 2 - centre[1])
        frames.append(
            cv2.warpAffine(
                portrait, matrix, (SIZE, SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
            )
        )
    write_video(ASSETS / "example_driving.mp4", np.stack(frames), FPS, crf=23)


if __name__ == "__main__":
    main()
