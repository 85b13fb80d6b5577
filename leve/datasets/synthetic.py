"""The embedded default dataset: seeded procedural rooms, ray-cast with exact metric depth.

Each sample is a box-shaped room (floor, ceiling, four walls) holding boxes and
spheres, seen by a pinhole camera with NYU-like intrinsics (scaled to the chosen
resolution). Surfaces carry procedural textures (tiles, stripes, smooth noise)
and are lit by a ceiling light with distance fall-off, so depth is learnable
from appearance: texture scale shrinks with distance, shading falls off, and
objects occlude. Depth is the camera-space z of the first hit (as NYU's depth),
between about 0.5 and 10 m. Sample ``i`` of split ``s`` depends only on
``(seed, s, i)``, so the bytes are the same whatever the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leve.datasets.build import BuildResult, SplitSource, build_store, store_path
from leve.datasets.nyu import MAX_DEPTH
from leve.params import config_dict, param, params_section
from leve.store.format import SplitSpec, dataset_arrays, fingerprint

SPLITS = ("train", "val", "test")
# NYU-Depth V2 colour camera intrinsics at 640x480 (fx, fy, cx, cy).
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)


@params_section("prepare.synthetic")
@dataclass
class Config:
    """Params of ``prepare.synthetic``."""

    out: Path | None = param()  # null: <paths.stores>/synthetic.zarr
    seed: int = param()
    height: int = param()
    width: int = param()
    train: int = param()
    val: int = param()
    test: int = param()
    workers: int = param()
    block_size: int = param()


# --------------------------------------------------------------------------- scene


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: intrinsics in pixels, position and world-from-camera rotation."""

    fx: float
    fy: float
    cx: float
    cy: float
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[tuple[float, ...], ...] = ((1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0))

    @classmethod
    def nyu_like(cls, height: int, width: int, **kw: Any) -> Camera:
        fx, fy, cx, cy = NYU_INTRINSICS
        return cls(fx * width / 640, fy * height / 480, cx * width / 640, cy * height / 480, **kw)


@dataclass(frozen=True)
class Material:
    """Albedo RGB in [0, 1] and a texture: ``plain``, ``tiles``, ``stripes`` or ``noise``."""

    albedo: tuple[float, float, float]
    pattern: str = "plain"
    scale: float = 0.5  # metres per texture period
    contrast: float = 0.3


@dataclass(frozen=True)
class Plane:
    """The plane ``p[axis] = offset`` (world axes: x right, y up, z forward)."""

    axis: int
    offset: float
    material: Material


@dataclass(frozen=True)
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    material: Material


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float
    material: Material


@dataclass
class Scene:
    planes: list[Plane] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    spheres: list[Sphere] = field(default_factory=list)
    light: tuple[float, float, float] = (0.0, 2.5, 3.0)


# --------------------------------------------------------------------------- ray casting


def camera_rays(cam: Camera, height: int, width: int) -> np.ndarray:
    """World-space ray directions (H, W, 3) whose camera-space z component is 1.

    Pixel (v, u) looks along ((u - cx)/fx, -(v - cy)/fy, 1) in camera space
    (y up), so the ray parameter t of a hit equals its camera-space depth.
    """
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    d_cam = np.stack([(u - cam.cx) / cam.fx, -(v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1)
    return d_cam @ np.asarray(cam.rotation, dtype=np.float64).T


def _hit_plane(o: np.ndarray, d: np.ndarray, p: Plane) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (p.offset - o[p.axis]) / d[..., p.axis]
    t = np.where(np.isfinite(t) & (t > 1e-6), t, np.inf)
    n = np.zeros(d.shape)
    n[..., p.axis] = -np.sign(d[..., p.axis])
    return t, n


def _hit_box(o: np.ndarray, d: np.ndarray, b: Box) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (np.asarray(b.lo) - o) / d
        t2 = (np.asarray(b.hi) - o) / d
    near = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf)
    far = np.nan_to_num(np.maximum(t1, t2), nan=np.inf)
    t_near, t_far = near.max(axis=-1), far.min(axis=-1)
    hit = (t_far >= t_near) & (t_near > 1e-6)
    axis = near.argmax(axis=-1)
    n = np.zeros(d.shape)
    np.put_along_axis(n, axis[..., None], -np.sign(np.take_along_axis(d, axis[..., None], -1)), axis=-1)
    return np.where(hit, t_near, np.inf), n


def _hit_sphere(o: np.ndarray, d: np.ndarray, s: Sphere) -> tuple[np.ndarray, np.ndarray]:
    oc = o - np.asarray(s.center)
    a = np.einsum("...i,...i", d, d)
    b = np.einsum("...i,i", d, oc)
    c = oc @ oc - s.radius**2
    disc = b * b - a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / a
    t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
    n = (o + np.where(np.isfinite(t), t, 0)[..., None] * d - np.asarray(s.center)) / s.radius
    return t, n


def _texture(m: Material, p: np.ndarray, normal_axis: np.ndarray) -> np.ndarray:
    """Texture intensity in [1-contrast, 1+contrast] from the two world coordinates tangent to the surface."""
    if m.pattern == "plain":
        return np.ones(p.shape[:-1])
    # tangent coordinates: drop the coordinate along the normal's axis
    a = np.where(normal_axis == 0, p[..., 2], p[..., 0])
    b = np.where(normal_axis == 1, p[..., 2], p[..., 1])
    k = 2 * np.pi / m.scale
    if m.pattern == "tiles":
        f = np.sign(np.sin(k * a) * np.sin(k * b))
    elif m.pattern == "stripes":
        f = np.sin(k * (a + 0.3 * b))
    else:  # smooth noise: a few fixed-phase sinusoids
        f = (np.sin(k * a + 1.3) * np.cos(0.7 * k * b + 0.4) + 0.5 * np.sin(2.3 * k * (a - b))) / 1.5
    return 1 + m.contrast * f


def render(scene: Scene, cam: Camera, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast ``scene``: RGB (H, W, 3) uint8 and depth (H, W) float32 metres (0 = no hit)."""
    o = np.asarray(cam.position, dtype=np.float64)
    d = camera_rays(cam, height, width)
    prims: list[Any] = [*scene.planes, *scene.boxes, *scene.spheres]
    best_t = np.full((height, width), np.inf)
    best_n = np.zeros((height, width, 3))
    best_id = np.full((height, width), -1)
    for k, prim in enumerate(prims):
        hit = _hit_plane if isinstance(prim, Plane) else _hit_box if isinstance(prim, Box) else _hit_sphere
        t, n = hit(o, d, prim)
        closer = t < best_t
        best_t = np.where(closer, t, best_t)
        best_n = np.where(closer[..., None], n, best_n)
        best_id = np.where(closer, k, best_id)
    valid = np.isfinite(best_t)
    depth = np.where(valid, best_t, 0.0)
    p = o + depth[..., None] * d
    rgb = _shade(scene, prims, p, best_n, best_id, depth)
    return rgb, depth.astype(np.float32)


def _shade(scene: Scene, prims: list[Any], p: np.ndarray, n: np.ndarray, ids: np.ndarray, depth: np.ndarray) -> np.ndarray:
    albedo = np.zeros(p.shape)
    axis = np.abs(n).argmax(axis=-1)
    for k, prim in enumerate(prims):
        mask = ids == k
        if mask.any():
            tex = _texture(prim.material, p[mask], axis[mask])
            albedo[mask] = np.asarray(prim.material.albedo) * tex[:, None]
    to_light = np.asarray(scene.light) - p
    dist = np.linalg.norm(to_light, axis=-1) + 1e-9
    lambert = np.clip(np.einsum("...i,...i", n, to_light) / dist, 0, 1)
    light = 0.25 + 0.9 * lambert / (1 + 0.04 * dist**2)
    fog = np.exp(-0.06 * depth)  # a gentle cue: far surfaces are darker
    color = np.clip(albedo * (light * fog)[..., None], 0, 1) ** (1 / 2.2)
    return (color * 255 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- random rooms


def _material(rng: np.random.Generator, patterns: tuple[str, ...]) -> Material:
    hue = rng.uniform(0, 1)
    sat, val = rng.uniform(0.2, 0.7), rng.uniform(0.45, 0.95)
    albedo = _hsv_to_rgb(hue, sat, val)
    return Material(albedo, str(rng.choice(patterns)), float(rng.uniform(0.25, 0.9)), float(rng.uniform(0.15, 0.4)))


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def random_room(rng: np.random.Generator, height: int, width: int) -> tuple[Scene, Camera]:
    """A random furnished room and a camera inside it (depths about 0.5–9.5 m)."""
    rw, rd, rh = rng.uniform(3.0, 6.0), rng.uniform(4.0, 8.5), rng.uniform(2.4, 3.2)
    surfaces = ("plain", "noise", "stripes")
    planes = [
        Plane(1, 0.0, _material(rng, ("tiles", "stripes", "noise"))),  # floor
        Plane(1, rh, _material(rng, ("plain", "noise"))),  # ceiling
        Plane(0, -rw / 2, _material(rng, surfaces)),
        Plane(0, rw / 2, _material(rng, surfaces)),
        Plane(2, rd, _material(rng, surfaces)),  # back wall
        Plane(2, -1.0, _material(rng, surfaces)),  # wall behind the camera
    ]
    boxes, spheres = [], []
    for _ in range(rng.integers(2, 7)):
        sx, sy, sz = rng.uniform(0.3, 1.4), rng.uniform(0.3, 1.5), rng.uniform(0.3, 1.2)
        x = rng.uniform(-rw / 2, rw / 2 - sx)
        z = rng.uniform(1.5, rd - sz)
        boxes.append(Box((x, 0.0, z), (x + sx, sy, z + sz), _material(rng, ("plain", "noise", "stripes"))))
    for _ in range(rng.integers(1, 4)):
        r = rng.uniform(0.2, 0.6)
        spheres.append(
            Sphere((rng.uniform(-rw / 2 + r, rw / 2 - r), r, rng.uniform(1.5 + r, rd - r)), r, _material(rng, ("plain",)))
        )
    yaw, pitch = rng.uniform(-0.35, 0.35), rng.uniform(-0.2, 0.05)
    position = (rng.uniform(-rw / 2 + 0.7, rw / 2 - 0.7), rng.uniform(1.1, 1.7), 0.0)
    cam = Camera.nyu_like(height, width, position=position, rotation=_rotation(yaw, pitch))
    light = (rng.uniform(-rw / 4, rw / 4), rh - 0.1, rng.uniform(1.0, rd - 1.0))
    return Scene(planes, boxes, spheres, light), cam


def _rotation(yaw: float, pitch: float) -> tuple[tuple[float, ...], ...]:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return tuple(map(tuple, (r_yaw @ r_pitch).tolist()))


def render_sample(seed: int, split: str, index: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``index`` of ``split``: same arguments, same bytes. Adds mild sensor noise."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    scene, cam = random_room(rng, height, width)
    rgb, depth = render(scene, cam, height, width)
    noise = rng.normal(0, 2.0, rgb.shape)
    rgb = np.clip(rgb + noise, 0, 255).astype(np.uint8)
    return rgb, np.clip(depth, 0, MAX_DEPTH)


# --------------------------------------------------------------------------- store


@dataclass
class SyntheticLoader:
    """Picklable loader: renders sample ``i`` of one split."""

    seed: int
    split: str
    height: int
    width: int

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        rgb, depth = render_sample(self.seed, self.split, i, self.height, self.width)
        meta = {"source": f"synthetic/{self.split}/{i:06d}", "scene": f"room_{self.split}_{i:06d}",
                "height": self.height, "width": self.width}
        return {"rgb": rgb, "depth": depth}, meta


META = {"source": "str", "scene": "str", "height": "int32", "width": "int32"}


def prepare(cfg: Config, force: bool = False, show_progress: bool = True) -> BuildResult:
    """Render the three splits into ``cfg.out``."""
    params = {k: v for k, v in config_dict(cfg).items() if k not in ("out", "workers")}
    camera = Camera.nyu_like(cfg.height, cfg.width)
    attrs = {
        "dataset": "synthetic",
        "units": "metres",
        "max_depth": MAX_DEPTH,
        "depth_definition": "camera-space z of the first ray hit; 0 = no hit",
        "intrinsics": {k: getattr(camera, k) for k in ("fx", "fy", "cx", "cy")},
        "sources": [],
        "params": params,
    }
    sources = []
    for split in SPLITS:
        n = getattr(cfg, split)
        spec = SplitSpec(split, n, dataset_arrays(cfg.height, cfg.width), META, attrs={"split": split})
        sources.append(SplitSource(spec, SyntheticLoader(cfg.seed, split, cfg.height, cfg.width)))
    return build_store(store_path(cfg.out, "synthetic"), attrs, fingerprint(params), sources, cfg.workers, cfg.block_size,
                       force, show_progress)
