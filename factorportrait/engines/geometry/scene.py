"""What the geometric engine builds once per request: the portrait's textured head and body,
the driving expression as per-frame offsets of the face, and the layers behind them.

- Geometry: the Conditioning's template (the head posed by ``head_pose``, the neck and
  shoulders held in the world, as the normal maps render it), with its face vertices moved
  across the reference camera's rays onto the portrait's own tracked landmarks (depth kept)
  and the skull carried along near the face, so the photo's eyes and lips sit on the mesh's
  (what lets a blink close the photo's own eyelids). The skull is grown, direction by
  direction, to the outline of the person's hair above the ears, so the hair turns with the
  head. The face mesh is cut open between the inner lips and a cavity is added behind them.
- Texture: projective texturing through the reference camera: each vertex keeps its point in
  that camera, interpolated perspective-correctly and projected per pixel, so the photo's own
  view gives the photo back exactly. What the photo really saw comes from a depth render of
  the same mesh from its camera (occluded or facing away: not seen); the further a frame's
  view is from the photo's, the less of what was seen at grazing angles is used (stretched
  into stripes from the side).
- Unseen parts (the back and far side of the head, the back of the neck, grazing sides): a
  fill colour per vertex, harmonic over the mesh's edges from the colours of the seen vertices
  (the photo blurred over the person only, no background bleeding in), pulled towards the
  median colour of the seen skull above the eyes (the hair) on the skull and of the seen body
  on the body: the back of the head is the hair's colour, smooth, never stripes or holes.
- Mouth: where the photo's lips part the cavity shows the photo (its teeth); a mouth opened
  wider than the photo's shows a dark back and lower side (``attributes_for``).
- Layers behind: the backdrop (the photo with the person removed: GrabCut started from the
  template's silhouette, then OpenCV's inpainting) on a plane behind the head, and the rest of
  the person (collar, suit, hair on the shoulders) on a plane at the body's depth, both held
  in the world and warped per camera by their homographies: parallax under camera motion, and
  what the head uncovers is the inpainted backdrop.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from ...errors import InputError
from ...head_pose.canonical import NUM_MESH_VERTICES
from ...head_pose.template import STABLE_LANDMARKS
from ...procrustes import umeyama
from .photo import fit_hair, inpainted_background, person_mask
from .photo import project as _project
from .raster import render_attributes

# MediaPipe's inner lip contour, in order around the mouth.
INNER_LIPS = np.array(
    [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]
)
CAVITY_DEPTH_CM = (0.8, 1.6)  # the ring behind the lips, the cavity's back, behind the lip loop
LOWER_LIP_RING = np.arange(11, 20)  # INNER_LIPS[11:]: the lower lip, between the corners
MOUTH_DARK_CM = 0.6  # a mouth this much wider open than the photo's is dark at its back
CAVITY_COLOURS = ((70.0, 30.0, 32.0), (18.0, 8.0, 8.0))  # the ring, the back (RGB)
# Seen-ness by the cosine between a vertex's normal and the way to the reference camera: none
# at or past the silhouette, full from this far round.
GRAZING = (0.02, 0.25)
GRAZING_VIEW_DEG = 20.0  # ... reached this far round from the reference's view
OCCLUSION_CM = 0.8  # a vertex further behind the reference's depth than this is hidden
# The face's residual to the landmarks carried onto the skull: weights fall off over this (cm).
CARRY_CM = 2.5
BACKGROUND_BEHIND_CM = 25.0  # the background plane, this far behind the head's centre
BODY_BEHIND_CM = 5.0  # the rest of the body's plane (the template's shoulders are ~6 cm back)
HAIR_PULL = 0.05  # how strongly the unseen skull and body are pulled to their part's colour
# Per-vertex attributes: the vertex in the reference camera (x, y, z cm: interpolated
# perspective-correctly and projected per pixel, the texture is exact projective texturing),
# its seen-ness, its fill colour (R, G, B).
SOURCE, SEEN, FILL = slice(0, 3), 3, slice(4, 7)
ATTRIBUTES = 7


@dataclass
class Scene:
    head_vertices: np.ndarray  # (Vh, 3) head frame: personalised face + skull (no cavity)
    head_faces: np.ndarray  # (Th, 3) the mouth cut open, then the cavity's triangles
    head_cull: np.ndarray  # (Th,) bool: cull back faces (not on the cavity, the face's join)
    body_vertices: np.ndarray  # (Vb, 3) world
    body_faces: np.ndarray
    attributes: np.ndarray  # (Vh + cavity + Vb, ATTRIBUTES); seen-ness for the reference's view
    cosine: np.ndarray  # (V,) normal . way to the reference camera (1 on the cavity)
    visible: np.ndarray  # (V,) 1 where the reference camera saw the vertex (not occluded)
    head_part: int  # the first head_part vertices move with the head, the rest with the world
    lips_apart: float  # cm between the inner lips' middles (13, 14) in the photo
    cavity_offset: np.ndarray  # (cavity, 3) head frame: moves the cavity onto the photo's mouth
    face_offsets: np.ndarray | None  # (F, 468, 3) the driving expression, head frame, cm
    texture: np.ndarray  # (H, W, 4) uint8: the reference RGB and the person's alpha
    background: np.ndarray  # (H, W, 3) uint8 the reference with the person inpainted out
    background_depth: float  # cm, the plane's depth in the reference camera
    body_layer: np.ndarray  # (H, W, 4) uint8 the person beyond the head's region, and alpha
    body_depth: float  # cm, its plane's depth in the reference camera
    reference_K: np.ndarray
    reference_c2w: np.ndarray

    def attributes_for(
        self, head_view_deg: float, world_view_deg: float, frame: int | None = None
    ) -> np.ndarray:
        """The attributes with the seen-ness for a view this far from the reference's (the
        head's part by the head's angle, the body's by the world's); in ``frame`` a mouth open
        wider than the photo's shows its dark back, not the photo's teeth stretched over it."""
        attributes = self.attributes.copy()
        head = slice(0, self.head_part)
        body = slice(self.head_part, None)
        attributes[head, SEEN] = seen_weights(self.cosine[head], self.visible[head], head_view_deg)
        attributes[body, SEEN] = seen_weights(self.cosine[body], self.visible[body], world_view_deg)
        if frame is not None and self.face_offsets is not None:
            lips = self.head_vertices[[13, 14]] + self.face_offsets[frame][[13, 14]]
            wider = np.linalg.norm(lips[0] - lips[1]) - self.lips_apart
            # The back and the lower lip's side of the ring darken (the photo's teeth stay
            # under the upper lip, where the upper teeth are).
            first = len(self.head_vertices)
            darken = first + np.r_[LOWER_LIP_RING, len(INNER_LIPS)]
            attributes[darken, SEEN] *= np.clip(1.0 - wider / MOUTH_DARK_CM, 0.0, 1.0)
        return attributes

    def posed_head(self, frame: int) -> np.ndarray:
        """(Vh + cavity, 3) head-frame vertices of one frame: the expression applied."""
        head = self.head_vertices
        if self.face_offsets is not None:
            head = head.copy()
            head[:NUM_MESH_VERTICES] += self.face_offsets[frame]
        return np.concatenate([head, cavity_vertices(head) + self.cavity_offset])


def cavity_vertices(head: np.ndarray) -> np.ndarray:
    """The mouth's cavity for the lips where they are: a ring behind the inner lip loop and
    the back of the cavity behind its centre (head frame: z out of the face)."""
    loop = head[INNER_LIPS]
    centre = loop.mean(0)
    ring = loop + (centre - loop) * 0.25 - [0.0, 0.0, CAVITY_DEPTH_CM[0]]
    back = centre - [0.0, 0.0, CAVITY_DEPTH_CM[1]]
    return np.concatenate([ring, back[None]])


def _cavity_faces(first: int) -> np.ndarray:
    """Triangles of the lips' tube into the ring and of the ring's fan onto the back."""
    n = len(INNER_LIPS)
    ring = first + np.arange(n)
    back = first + n
    faces = []
    for i in range(n):
        j = (i + 1) % n
        faces += [[INNER_LIPS[i], INNER_LIPS[j], ring[i]], [INNER_LIPS[j], ring[j], ring[i]]]
        faces.append([ring[i], ring[j], back])
    return np.array(faces, np.int64)


def _mouth_cut(faces: np.ndarray) -> np.ndarray:
    """The head's triangles less those spanning the mouth (all three corners on the inner lip
    loop): the canonical mesh closes the lips; cut open, an open jaw shows the cavity."""
    on_loop = np.isin(faces, INNER_LIPS).all(1)
    return faces[~on_loop]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit normals: the area-weighted normals of the triangles around each vertex."""
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def personalised_head(template, landmarks: np.ndarray, K, c2w) -> np.ndarray:
    """The template head with its face moved across the reference camera's rays onto the
    tracked landmarks (each vertex keeps its depth) and the skull carried along near the
    face's outline (world = the reference's head frame)."""
    head = np.array(template.head_vertices, dtype=np.float64)
    face = head[:NUM_MESH_VERTICES]
    _, cam = _project(face, K, c2w)
    z = cam[:, 2:]
    target = np.c_[(landmarks[:NUM_MESH_VERTICES, :2] - K[:2, 2]) / np.diag(K)[:2] * z, z]
    c2w_rot = c2w[:3, :3]
    residual = (target - cam) @ c2w_rot.T  # world
    head[:NUM_MESH_VERTICES] += residual
    skull = head[NUM_MESH_VERTICES:]
    distance = np.linalg.norm(skull[:, None] - face[None], axis=-1)
    weights = np.exp(-((distance / CARRY_CM) ** 2))
    carried = weights @ residual / np.maximum(weights.sum(1, keepdims=True), 1e-9)
    # The ring next to the face moves with it in full (no fold in the band that joins them).
    nearest = np.maximum(distance.min(1, keepdims=True) - 1.0, 0.0)
    falloff = np.exp(-((nearest / CARRY_CM) ** 2))
    head[NUM_MESH_VERTICES:] += carried * falloff
    return head


def expression_offsets(conditioning, template_face: np.ndarray) -> np.ndarray | None:
    """(F, 468, 3) the driving clip's expression in the head's own frame: each frame's
    landmarks fitted by a similarity onto the template face's stable landmarks (head pose and
    size removed, the portrait's scale taken on), minus the clip's own neutral (its least
    expressive frame by the blendshapes). None when the mode does not drive the face."""
    if conditioning.driving_landmarks is None or not conditioning.mode.drives_head:
        return None
    landmarks = np.asarray(conditioning.driving_landmarks, dtype=np.float64)
    landmarks = landmarks[:, :NUM_MESH_VERTICES] * np.array([1.0, -1.0, -1.0])  # y up, z out
    target = template_face[STABLE_LANDMARKS]
    aligned = np.empty_like(landmarks)
    for frame, points in enumerate(landmarks):
        scale, rotation, translation = umeyama(points[STABLE_LANDMARKS], target)
        aligned[frame] = scale * points @ rotation.T + translation
    names = list(conditioning.blendshape_names)
    activity = np.asarray(conditioning.blendshapes, dtype=np.float64)
    if "_neutral" in names:
        activity = np.delete(activity, names.index("_neutral"), axis=1)
    neutral = int(activity.sum(1).argmin()) if len(activity) == len(aligned) else 0
    return aligned - aligned[neutral]


def _seen(vertices, normals, faces, cull, K, c2w, height, width):
    """Per vertex: the cosine between its normal and the way to the reference camera, whether
    that camera saw it (in the frame, not occluded) and its pixel there."""
    pixels, cam = _project(vertices, K, c2w)
    attributes = np.zeros((len(vertices), 1))
    _, depth, _ = render_attributes(cam, attributes, faces, cull, K, height, width)
    # Seen when any of the four pixels around the vertex shows a surface no nearer than the
    # vertex (less OCCLUSION_CM): at an occluding edge (the nose over the cheek) a vertex just
    # beside it is still seen.
    col = np.floor(pixels[:, 0] - 0.5).astype(int)
    row = np.floor(pixels[:, 1] - 0.5).astype(int)
    farthest = np.zeros(len(vertices))
    for dr in (0, 1):
        for dc in (0, 1):
            r = np.clip(row + dr, 0, height - 1)
            c = np.clip(col + dc, 0, width - 1)
            farthest = np.maximum(farthest, depth[r, c])
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0)
    inside &= pixels[:, 1] < height
    unoccluded = cam[:, 2] <= farthest + OCCLUSION_CM
    w2c = np.linalg.inv(c2w)
    towards = -cam / np.linalg.norm(cam, axis=1, keepdims=True)
    cosine = ((normals @ w2c[:3, :3].T) * towards).sum(1)
    return cosine, unoccluded & inside, pixels


def seen_weights(cosine, visible, view_deg):
    """How much of the photo to show per vertex for a view ``view_deg`` degrees away from the
    reference's: from the reference's own view everything it saw (the photo is exact there,
    grazing or not); further round, less of what it saw at grazing angles (stretched into
    stripes from the side), down to none below GRAZING[0] and all above GRAZING[1]."""
    away = np.clip(np.asarray(view_deg, dtype=np.float64) / GRAZING_VIEW_DEG, 0.0, 1.0)
    low = GRAZING[0] * away
    high = 0.03 + (GRAZING[1] - 0.03) * away
    ramp = np.clip((cosine - low) / (high - low), 0.0, 1.0)
    return (ramp + (1.0 - ramp) * (1.0 - away)) * visible


def _harmonic_fill(colours, known, faces, count, default, pull):
    """Colours of the unknown vertices: harmonic over the mesh's edges from the known ones,
    each pulled by ``pull`` (V,) towards its ``default`` (V, 3) (so the far back of the head
    takes the hair's colour, not a mix of what borders it)."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = sparse.coo_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count)
    ).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    laplacian = sparse.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency
    unknown = np.flatnonzero(~known)
    if len(unknown) == 0:
        return colours
    known_index = np.flatnonzero(known)
    pull = np.maximum(np.asarray(pull, dtype=np.float64)[unknown], 1e-4)
    system = laplacian[unknown][:, unknown] + sparse.diags(pull)
    rhs = -laplacian[unknown][:, known_index] @ colours[known_index]
    rhs = rhs + pull[:, None] * np.asarray(default)[unknown]
    filled = colours.copy()
    filled[unknown] = np.column_stack(
        [spsolve(system.tocsc(), rhs[:, k]) for k in range(colours.shape[1])]
    )
    return filled


def build_scene(conditioning) -> Scene:
    template = conditioning.head_template
    if template is None:
        raise InputError("geometry engine: the conditioning has no head template")
    reference = np.ascontiguousarray(conditioning.reference)
    height, width = reference.shape[:2]
    K = np.asarray(conditioning.K[0], dtype=np.float64)
    c2w = (
        np.asarray(conditioning.reference_c2w, dtype=np.float64)
        if conditioning.reference_c2w is not None
        else np.asarray(conditioning.c2w[0], dtype=np.float64)
    )
    landmarks = np.asarray(conditioning.source_landmarks, dtype=np.float64)

    head = personalised_head(template, landmarks, K, c2w)
    head_count = len(head)
    faces = _mouth_cut(np.asarray(template.head_faces))
    cavity = _cavity_faces(head_count)
    all_head_faces = np.concatenate([faces, cavity])
    # Culled but for the cavity (seen from inside) and the band joining the face to the skull
    # (drawn from both sides: where the portrait's face is wider than the template's, the band
    # may fold, and a crack would show the background through the cheek).
    band = (faces < NUM_MESH_VERTICES).any(1) & (faces >= NUM_MESH_VERTICES).any(1)
    cull = np.r_[~band, np.zeros(len(cavity), bool)]
    cavity_count = len(INNER_LIPS) + 1
    body = np.asarray(template.body_vertices, dtype=np.float64)
    body_faces = np.asarray(template.body_faces, dtype=np.int64)
    scene_faces = np.concatenate([all_head_faces, body_faces + head_count + cavity_count])
    scene_cull = np.r_[cull, np.ones(len(body_faces), bool)]

    def scene_vertices(head):
        return np.concatenate([head, cavity_vertices(head), body])

    def silhouette_of(vertices, faces=scene_faces, cull=scene_cull):
        _, depth, _ = render_attributes(
            _project(vertices, K, c2w)[1],
            np.zeros((len(vertices), 1)),
            faces,
            cull,
            K,
            height,
            width,
        )
        return depth > 0

    # The person in the photo (the template's silhouette refined by GrabCut); the skull grown
    # to the hair's outline; the background without the person.
    hull = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(landmarks[:, :2].astype(np.int32)), 1)
    silhouette = silhouette_of(scene_vertices(head))
    person = person_mask(reference, silhouette, hull > 0)
    # Inside the template's own head (a little in from its outline) it is the person whatever
    # GrabCut says: hair the colour of the backdrop (or of a dark frame edge the backdrop's
    # model learnt) would otherwise stay behind in the background and leave the head bald.
    inner = max(3, round(0.03 * max(height, width)) | 1)
    template_head = silhouette_of(
        scene_vertices(head)[: head_count + cavity_count], all_head_faces, cull
    )
    template_head = cv2.erode(
        template_head.astype(np.uint8),
        cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (inner, inner)),
    )
    person = np.maximum(person, cv2.GaussianBlur(template_head.astype(np.float32), (0, 0), 1))
    head = fit_hair(head, silhouette, person, K, c2w)
    vertices = scene_vertices(head)
    background = inpainted_background(reference, person)
    # The rest of the person (the body beyond the template's shoulders, a suit, a collar): a
    # layer of its own at the body's depth, held in the world as the body is.
    head_only = silhouette_of(vertices[: head_count + cavity_count], all_head_faces, cull)
    # Above the ears the head's region reaches out 1/25 of the frame (hair tips GrabCut kept
    # but the grown skull did not reach must not stay behind); below them it is the head's own
    # silhouette: the jaw's edge, the neck, the collar and hair down to the shoulders are the
    # body's, held in the world (else a gap opens between the jaw and the template's neck).
    near = max(3, round(0.04 * max(height, width)) | 1)
    head_region = cv2.dilate(
        head_only.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (near, near))
    )
    ears = int(np.clip(landmarks[[234, 454], 1].min(), 0, height))
    head_region[ears:] = head_only[ears:]
    head_region = cv2.GaussianBlur(head_region.astype(np.float32), (0, 0), 2)
    body_alpha = person * (1.0 - np.clip(head_region, 0.0, 1.0))
    body_layer = np.dstack([reference, np.clip(body_alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)])
    # The grown head's own normals (the template's no longer fit where the skull grew).
    normals = np.concatenate(
        [
            vertex_normals(head, faces),
            np.tile([0.0, 0.0, 1.0], (cavity_count, 1)),
            template.body_normals,
        ]
    )

    cosine, visible, pixels = _seen(
        vertices, normals, scene_faces, scene_cull, K, c2w, height, width
    )
    # The cavity shows the photo where the photo's lips part (its teeth), else its own dark
    # colours, never the lips'.
    cavity_slice = slice(head_count, head_count + cavity_count)
    lips = landmarks[INNER_LIPS, :2].astype(np.float32)
    # It lies where the photo shows the inside of the mouth: the ring a quarter of the way in
    # from the lips, the back at the middle, in the photo's pixels, each at its own depth (a
    # cavity only set back would project onto the upper lip from a camera that looks down on
    # the face); it keeps that offset from the lips as they move.
    source = _project(vertices, K, c2w)[1]
    lips_px = landmarks[INNER_LIPS, :2]
    middle = lips_px.mean(0)
    mouth_px = np.concatenate([lips_px + 0.25 * (middle - lips_px), middle[None]])
    depth = source[cavity_slice, 2:]
    on_rays = np.c_[(mouth_px - K[:2, 2]) / np.diag(K)[:2] * depth, depth]
    moved = on_rays @ c2w[:3, :3].T + c2w[:3, 3]  # world = the photo's head frame
    cavity_offset = moved - vertices[cavity_slice]
    vertices[cavity_slice] = moved
    source[cavity_slice] = on_rays
    pixels[cavity_slice] = mouth_px
    cosine[cavity_slice] = 1.0
    visible[cavity_slice] = [
        cv2.pointPolygonTest(lips, (float(x), float(y)), True) > 0.5 for x, y in mouth_px
    ]
    seen = seen_weights(cosine, visible, GRAZING_VIEW_DEG)

    # Fill colours: the photo blurred over the person only (no background bleeds in) where the
    # vertex was seen on the person, harmonic across the mesh elsewhere.
    weight = cv2.GaussianBlur(person, (0, 0), 3)[..., None]
    blurred = cv2.GaussianBlur(reference.astype(np.float32) * person[..., None], (0, 0), 3)
    blurred = (blurred / np.maximum(weight, 1e-3)).astype(np.float64)
    col = np.clip(np.round(pixels[:, 0] - 0.5).astype(int), 0, width - 1)
    row = np.clip(np.round(pixels[:, 1] - 0.5).astype(int), 0, height - 1)
    colours = blurred[row, col]
    on_person = person[row, col] > 0.9
    known = (seen > 0.5) & on_person
    known[cavity_slice] = True  # their own colours, below
    colours[head_count : head_count + len(INNER_LIPS)] = CAVITY_COLOURS[0]
    colours[head_count + len(INNER_LIPS)] = CAVITY_COLOURS[1]
    # The skull's unseen part is pulled towards the hair's colour (the median of the seen skull
    # above the eyes), the body's towards the body's.
    skull = np.zeros(len(vertices), bool)
    skull[NUM_MESH_VERTICES:head_count] = True
    hair = known & skull & (vertices[:, 1] > vertices[168, 1])
    body_part = np.zeros(len(vertices), bool)
    body_part[head_count + cavity_count :] = True
    default = np.zeros((len(vertices), 3))
    for part, seen_part in ((skull, hair), (body_part, known & body_part)):
        fallback = colours[known].mean(0) if known.any() else np.full(3, 128.0)
        default[part] = np.median(colours[seen_part], 0) if seen_part.sum() > 5 else fallback
    default[:NUM_MESH_VERTICES] = colours[known[:NUM_MESH_VERTICES].nonzero()[0]].mean(0)
    pull = np.where(skull | body_part, HAIR_PULL, 1e-4)
    colours = _harmonic_fill(colours, known, scene_faces, len(vertices), default, pull)

    attributes = np.column_stack([source, seen, colours])
    head_vertices_all = head_count + cavity_count
    texture = np.dstack([reference, np.clip(person * 255.0 + 0.5, 0, 255).astype(np.uint8)])
    distance = float(np.linalg.norm(c2w[:3, 3]))
    return Scene(
        head_vertices=head,
        head_faces=all_head_faces,
        head_cull=cull,
        body_vertices=body,
        body_faces=body_faces,
        attributes=attributes,
        cosine=cosine,
        visible=visible.astype(np.float64),
        head_part=head_vertices_all,
        lips_apart=float(np.linalg.norm(head[13] - head[14])),
        cavity_offset=cavity_offset,
        face_offsets=expression_offsets(conditioning, head[:NUM_MESH_VERTICES]),
        texture=texture,
        background=background,
        background_depth=distance + BACKGROUND_BEHIND_CM,
        body_layer=body_layer,
        body_depth=distance + BODY_BEHIND_CM,
        reference_K=K,
        reference_c2w=c2w,
    )
