"""Camera-based perception (issue #20): object and zone rows estimated from a rendered RGB-D frame.

The estimator sees what a camera sees: the RGB image, PyBullet's depth buffer and the camera's known
view / projection matrices. It never reads the segmentation mask, body ids, poses or the task instance
(privileged state). What it may know is calibration: the catalogue colours and sizes, how the worlds
paint the robot, table, board and zones, the table height, the push blocks' footprints.

    perception = Perception("pickplace")                     # frames of DEFAULT_SIZES["pickplace"]
    rgb, depth = render_for_perception(env)                  # same camera as env's frames, larger
    est = perception.estimate(rgb, depth, env._view, env._proj)
    est.objects      # (MAX_OBJECTS, OBJ_DIM) float32, the layout of env.object_rows()
    est.zones        # (MAX_ZONES, OBJ_DIM) float32, the layout of env.zone_rows()
    est.confidence   # (MAX_OBJECTS,) in [0, 1];  est.support: [(upper row, lower row), ...]

Method, per frame (benchmarks/perception_accuracy.py measures it):
1. Back-projection: pixel (u, v) (column, row from the top) with depth-buffer value d is the world point
   inv(proj @ view) (2u/W - 1, 1 - 2(v+1)/H, 2d - 1, 1), dehomogenised: TinyRenderer's pixel convention
   (measured: a vertical cube face comes back on its plane to 0.0 mm, the table top at z = 0.0 mm; half-pixel
   centres are off by ~1 mm). Far-plane pixels are background. `linear_depth` gives metric depth (near/far).
2. Colour: TinyRenderer shades a face by scaling its albedo (by 0.6-0.94, measured), which keeps hue and
   saturation, so a pixel takes the class nearest in the chroma plane (S cos H, S sin H) of cv2's HSV
   (a 256 x 256 look-up table over hue and saturation) among the world's object colours and its
   distractors (the robot's grey has a blue cast that tells it from the white cube; table; board), within
   a tolerance and a brightness range. Pixels above the table (z > MIN_HEIGHT) are classified against the
   object colours, pixels on it against the zones' pastel colours.
3. Segmentation: per colour, connected components (cv2) of the mask cut along depth discontinuities (a
   3-D step to a neighbour pixel above JUMP_FOOTPRINTS pixel footprints); components that fit in one
   object together are merged (the arm in front splits a cube's image); a cluster too tall for one cube is
   cut one catalogue edge above its bottom, at whichever edge makes both parts' widths agree with their
   heights (a small and a large cube of one colour stacked), a cluster too wide is split by its top faces
   (two cubes of one colour side by side), else by cv2.kmeans.
4. Surface normals from central differences of the world-point image (cv2.Sobel): top faces (|n_z| > 0.9)
   and side faces (|n_z| < 0.3).
5. A cube: its top height is the median of its top-face pixels (a cube with another on it: that cube's
   bottom); its edge is that top's height over what it rests on (the table, or the highest cube top below
   that it overlaps) or over its own bottom edge, snapped to the catalogue edge within SIZE_TOL; yaw is
   the circular mean (modulo 90 degrees) of the side-face normals and the top face's cv2.minAreaRect; the
   centre, along each cube axis, comes from a side face across that axis (its plane offset, minus half the
   edge: exact), else from the midpoint of a face extent that spans the whole edge, else from the end of a
   cut-short top face that does not border something nearer the camera, plus half the edge.
   z = top - edge / 2.
6. A push block: the top face's outline (cv2.findContours) carried to the world plane through the depth,
   filled on a 1 mm grid and matched by IoU against the catalogue footprints every ANGLE_STEP degrees
   (shape and yaw at once, the yaw refined by a parabola through the best three); the centre is the area
   centroid of the outline, z = top - height / 2, size 2 x the shape's bounding radius.
7. A zone: the pastel pixels of one colour on the table; an axis-aligned square from their extent (an
   edge hidden by cubes standing in the zone is taken from the side with the longer visible run).
8. Support: `envs.geometry.support_graph` of the estimated rows (the one definition of resting).
9. Confidence (a heuristic in [0, 1]): how well the measured edge fits a catalogue edge (push: the
   footprint IoU) times how much of the object was seen. Below ~0.5 a row is doubtful.

Known limits: a tilted cube is reported flat (yaw only); a cube hidden behind the arm or a taller stack is
missed (nothing of it is in the frame); a cube whose top is hidden and whose sides are cut by the arm or
the fingers gets its size from its visible width (often wrong; confidence ~0.02); two touching cubes
of one colour and one size (push: two blocks of one colour) are split only by k-means.

Layout: `estimator` (Perception, Estimate, render_for_perception, noisy_rows: the entry points), `config` (the
worlds and the constants above), `geometry` (steps 1 and 4: back-projection, the frame's points and normals),
`colour` (step 2), `segmentation` (step 3), `objects` (step 5, and the per-cluster measurements), `blocks` (step 6),
`zones` (step 7). Everything other modules use is imported from `envs.perception` itself.
"""

from __future__ import annotations

from envs.perception.config import (
    ANGLE_STEP,
    DEFAULT_SIZES,
    GRID_MM,
    GRID_N,
    JUMP_FOOTPRINTS,
    MIN_HEIGHT,
    OCCLUDER_GAP,
    SIDE_NZ,
    SIZE_TOL,
    SUPPORT_GAP,
    TABLE_SNAP,
    TOP_NZ,
    TOP_TOL,
    WORLDS,
    ZONE_MIN_FRACTION,
    ZONE_MIN_VALUE,
)
from envs.perception.estimator import Estimate, Perception, noisy_rows, render_for_perception
from envs.perception.geometry import backproject, camera_position, linear_depth, near_far

__all__ = [
    "ANGLE_STEP",
    "DEFAULT_SIZES",
    "GRID_MM",
    "GRID_N",
    "JUMP_FOOTPRINTS",
    "MIN_HEIGHT",
    "OCCLUDER_GAP",
    "SIDE_NZ",
    "SIZE_TOL",
    "SUPPORT_GAP",
    "TABLE_SNAP",
    "TOP_NZ",
    "TOP_TOL",
    "WORLDS",
    "ZONE_MIN_FRACTION",
    "ZONE_MIN_VALUE",
    "Estimate",
    "Perception",
    "backproject",
    "camera_position",
    "linear_depth",
    "near_far",
    "noisy_rows",
    "render_for_perception",
]
