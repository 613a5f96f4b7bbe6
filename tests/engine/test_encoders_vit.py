"""Foundation-model ViT presets: published shapes, checkpoint formats, a naive reference forward,
weights lookup and errors, fingerprints, the TileEncoder wiring. CPU, tiny configs, seconds.

The full-size presets equal timm on the same random weights: benchmarks/bench_vit_equivalence.py
(where timm imports); here every preset's parameter names and shapes are checked against the
published shape lists (engine/encoders/shapes/*.json, written by that script from timm)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_histostain.engine.encoders import EncoderError, get_encoder
from napari_histostain.engine.encoders import foundation as P
from napari_histostain.engine.encoders import vit as V
from napari_histostain.engine.encoders.base import encoder_identity
from napari_histostain.engine.encoders.checkpoints import (
    expand_shapes,
    load_checked,
    read_state_dict,
)
from napari_histostain.engine.encoders.registry import (
    PRESET_NAMES,
    describe_encoders,
    split_encoder_spec,
)
from napari_histostain.engine.encoders.weights import (
    WEIGHTS_ENV,
    find_weights,
    state_dict_fingerprint,
)

SHAPES = Path(P.__file__).with_name("shapes")
REAL = [n for n, p in P.PRESETS.items() if p.random_seed is None]


def tiny(name: str) -> P.Preset:
    """The preset at depth 2, width 96, 112 px: every code path of the real one, in milliseconds."""
    return P.with_config(name, depth=2, embed_dim=96, num_heads=4, img_size=112)


def random_model(preset: P.Preset, seed: int = 0) -> torch.nn.Module:
    return V.init_random_(P.build_model(preset), seed).eval()


def images(n: int = 2, size: int = 112, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def empty_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Uninitialised uint8 tensors of these shapes (no pages touched; cheaper than "meta" tensors,
    whose first torch.cat imports torch's meta kernels)."""
    return {k: torch.empty(s, dtype=torch.uint8) for k, s in shapes.items()}


# ------------------------------------------------------------------------------------------------
# Published facts and shapes
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", REAL)
def test_presets_match_the_published_checkpoints_names_and_shapes(name):
    fixture = json.loads((SHAPES / f"{name}.json").read_text())
    published = expand_shapes(fixture)
    with torch.device("meta"):
        model = P.build_model(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    converted = {
        k: list(v.shape) for k, v in P.convert_checkpoint(empty_state(published), name).items()
    }
    assert converted == ours
    if P.PRESETS[name].key_format == "timm":
        assert published == ours  # the hub file loads under its own names, no renaming


def test_the_registry_lists_every_preset():
    assert tuple(P.PRESETS) == PRESET_NAMES
    assert sorted(p.name for p in SHAPES.glob("*.json")) == sorted(f"{n}.json" for n in REAL)


def test_published_facts():
    dims = {
        "uni": 1024,
        "uni2-h": 1536,
        "virchow2": 2560,
        "h-optimus-0": 1536,
        "h-optimus-1": 1536,
        "prov-gigapath": 1536,
        "phikon-v2": 1024,
        "conch-v1.5": 768,
    }
    assert {n: P.PRESETS[n].dim for n in dims} == dims
    assert {n: P.PRESETS[n].tile_size for n in dims} == {
        **dict.fromkeys(dims, 224),
        "conch-v1.5": 448,
    }
    assert P.PRESETS["h-optimus-0"].mean == (0.707223, 0.578729, 0.703617)
    assert P.PRESETS["virchow2"].vit.reg_tokens == 4 and P.PRESETS["uni2-h"].vit.reg_tokens == 8
    assert P.PRESETS["prov-gigapath"].vit.patch_size == 16  # ViT-g/16, not /14
    for name in REAL:
        p = P.PRESETS[name]
        assert p.hub and p.licence and p.files and 0.4 < p.um_per_px < 0.6


# ------------------------------------------------------------------------------------------------
# Numerics: our module vs a naive forward written from the state dict alone
# ------------------------------------------------------------------------------------------------
def naive_vit(sd: dict[str, torch.Tensor], cfg: V.ViTConfig, x: torch.Tensor) -> torch.Tensor:
    b, d, h = x.shape[0], cfg.embed_dim, cfg.num_heads
    t = (
        F.conv2d(
            x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=cfg.patch_size
        )
        .flatten(2)
        .transpose(1, 2)
    )
    prefix = [sd["cls_token"].expand(b, 1, d)]
    if cfg.reg_tokens:
        prefix.append(sd["reg_token"].expand(b, -1, d))
    if cfg.no_embed_class:
        t = torch.cat([*prefix, t + sd["pos_embed"]], 1)
    else:
        t = torch.cat([*prefix, t], 1) + sd["pos_embed"]
    n = t.shape[1]
    for i in range(cfg.depth):

        def w(name, i=i):
            return sd[f"blocks.{i}.{name}"]

        y = F.layer_norm(t, (d,), w("norm1.weight"), w("norm1.bias"), cfg.norm_eps)
        q, k, v = (y @ w("attn.qkv.weight").T + w("attn.qkv.bias")).chunk(3, -1)
        q, k, v = (z.reshape(b, n, h, d // h).transpose(1, 2) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), -1) @ v
        y = att.transpose(1, 2).reshape(b, n, d) @ w("attn.proj.weight").T + w("attn.proj.bias")
        t = t + (y * w("ls1.gamma") if cfg.init_values else y)
        y = F.layer_norm(t, (d,), w("norm2.weight"), w("norm2.bias"), cfg.norm_eps)
        y = y @ w("mlp.fc1.weight").T + w("mlp.fc1.bias")
        if cfg.mlp == "swiglu":
            gate, value = y.chunk(2, -1)
            y = F.silu(gate) * value
        else:
            y = F.gelu(y)
        y = y @ w("mlp.fc2.weight").T + w("mlp.fc2.bias")
        t = t + (y * w("ls2.gamma") if cfg.init_values else y)
    t = F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], cfg.norm_eps)
    if cfg.pool == "tokens":
        return t
    if cfg.pool == "cls+mean":
        return torch.cat([t[:, 0], t[:, 1 + cfg.reg_tokens :].mean(1)], 1)
    return t[:, 0]


def naive_conch(sd: dict[str, torch.Tensor], cfg: V.ViTConfig, x: torch.Tensor) -> torch.Tensor:
    trunk = {k[6:]: v for k, v in sd.items() if k.startswith("trunk.")}
    ctx = naive_vit(trunk, cfg, x)

    def s(name):
        return sd[f"attn_pool_contrast.{name}"]

    ctx = F.layer_norm(ctx, (ctx.shape[-1],), s("ln_k.weight"), s("ln_k.bias"))
    q = F.layer_norm(s("query"), (768,), s("ln_q.weight"), s("ln_q.bias")) @ s("to_q.weight").T
    k, v = (ctx @ s("to_kv.weight").T).chunk(2, -1)
    heads = [
        torch.softmax(
            q[:, j * 96 : (j + 1) * 96]
            @ k[..., j * 96 : (j + 1) * 96].transpose(1, 2)
            / math.sqrt(96),
            -1,
        )
        @ v[..., j * 96 : (j + 1) * 96]
        for j in range(8)
    ]
    out = torch.cat(heads, -1)[:, 0] @ s("to_out.weight").T
    return F.layer_norm(out, (768,), sd["ln_contrast.weight"], sd["ln_contrast.bias"])


@pytest.mark.parametrize("name", list(P.PRESETS))
def test_every_preset_equals_a_naive_forward_on_random_weights(name):
    p = tiny(name) if P.PRESETS[name].random_seed is None else P.PRESETS[name]
    model = random_model(p, seed=1)
    x = images(size=p.vit.img_size)
    with torch.no_grad():
        got = model(x.contiguous(memory_format=torch.channels_last))
        sd = model.state_dict()
        expected = naive_conch(sd, p.vit, x) if p.head == "conch" else naive_vit(sd, p.vit, x)
    assert got.shape == (2, p.dim)
    assert (got - expected).abs().max() <= 1e-5


def test_other_input_sizes_resize_pos_embed():
    p = tiny("virchow2")
    model = random_model(p)
    with torch.no_grad():
        a = model(images())
        b = model(images(n=1, size=140))
    assert a.shape == (2, p.dim) and b.shape == (1, p.dim)
    pos = torch.randn(1, 1 + 16 * 16, 8)
    assert V.resample_pos_embed(pos, (16, 16), 1, "timm") is pos
    assert V.resample_pos_embed(pos, (16, 16), 1, "dino") is pos
    timm_32 = V.resample_pos_embed(pos, (32, 32), 1, "timm")
    dino_32 = V.resample_pos_embed(pos, (32, 32), 1, "dino")
    assert timm_32.shape == dino_32.shape == (1, 1 + 32 * 32, 8)
    assert torch.equal(dino_32[:, :1], pos[:, :1]) and not torch.allclose(timm_32, dino_32)


def test_bf16_autocast_runs_close_to_float32():
    p = tiny("uni2-h")
    model = random_model(p)
    x = images()
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    err = (low.float() - ref).abs().max()
    assert 0 < err < 0.1 * ref.abs().max()  # bf16 was used, and is close


# ------------------------------------------------------------------------------------------------
# Checkpoint formats
# ------------------------------------------------------------------------------------------------
def load(p: P.Preset, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    with torch.device("meta"):
        model = P.build_model(p)
    load_checked(model, P.convert_checkpoint(state, p), what=p.name)
    return model.eval()


def outputs_close(p: P.Preset, a: dict, b: dict) -> bool:
    x = images(n=1)
    with torch.no_grad():
        return bool((load(p, a)(x) - load(p, b)(x)).abs().max() <= 1e-4)


def test_dinov2_and_unpacked_swiglu_checkpoints_load_like_timm_ones():
    p = tiny("h-optimus-0")
    sd = random_model(p, seed=2).state_dict()
    pos, d = sd["pos_embed"], p.vit.embed_dim
    cls_pos = torch.randn(1, 1, d, generator=torch.Generator().manual_seed(0))
    dinov2 = {
        "mask_token": torch.zeros(1, d),
        "register_tokens": sd["reg_token"],
        "cls_token": sd["cls_token"] - cls_pos,
        "pos_embed": torch.cat([cls_pos, pos], 1),
    }
    unpacked = {}
    for k, v in sd.items():
        if k in ("reg_token", "cls_token", "pos_embed"):
            continue
        dinov2[k.replace("mlp.fc1", "mlp.w12").replace("mlp.fc2", "mlp.w3")] = v
        if ".mlp.fc1." in k:
            g, x = v.chunk(2, 0)
            unpacked[k.replace("fc1", "fc1_g")], unpacked[k.replace("fc1", "fc1_x")] = g, x
        else:
            unpacked[k] = v
    unpacked.update({k: sd[k] for k in ("reg_token", "cls_token", "pos_embed")})
    teacher = {
        **{"backbone." + k: v for k, v in dinov2.items()},
        "dino_head.last_layer.weight": torch.zeros(4, 8),
    }
    assert outputs_close(p, sd, {"teacher": teacher, "iteration": 1})
    assert outputs_close(p, sd, unpacked)
    wrapped = {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}
    assert outputs_close(p, sd, wrapped)


@pytest.mark.parametrize("version", [4, 5])
def test_hugging_face_dinov2_names_load(version):
    p = tiny("phikon-v2")
    sd = random_model(p, seed=3).state_dict()
    hf = {
        "embeddings.cls_token": sd["cls_token"],
        "embeddings.mask_token": torch.zeros(1, 96),
        "embeddings.position_embeddings": sd["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        "layernorm.weight": sd["norm.weight"],
        "layernorm.bias": sd["norm.bias"],
    }
    for i in range(p.vit.depth):
        pre, b = f"encoder.layer.{i}.", f"blocks.{i}."
        names = (
            [
                "attention.attention.query",
                "attention.attention.key",
                "attention.attention.value",
                "attention.output.dense",
            ]
            if version == 4
            else ["attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj"]
        )
        for kind in ("weight", "bias"):
            for name, part in zip(names[:3], sd[f"{b}attn.qkv.{kind}"].chunk(3, 0)):
                hf[f"{pre}{name}.{kind}"] = part
            hf[f"{pre}{names[3]}.{kind}"] = sd[f"{b}attn.proj.{kind}"]
            for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                hf[f"{pre}{n}.{kind}"] = sd[f"{b}{n}.{kind}"]
        hf[pre + "layer_scale1.lambda1"] = sd[b + "ls1.gamma"]
        hf[pre + "layer_scale2.lambda1"] = sd[b + "ls2.gamma"]
    assert outputs_close(p, sd, hf)


def test_a_pos_embed_for_another_grid_is_resized_on_load():
    p = tiny("uni")
    sd = random_model(p, seed=4).state_dict()
    big = dict(sd, pos_embed=torch.randn(1, 1 + 32 * 32, 96))
    assert load(p, big).pos_embed.shape == sd["pos_embed"].shape


def test_wrong_weights_give_one_clear_error(tmp_path):
    sd = random_model(tiny("uni"), seed=5).state_dict()
    torch.save(sd, tmp_path / "uni.bin")
    with pytest.raises(
        EncoderError,
        match=r"wrong shape: .*Is it pytorch_model.bin from "
        r"MahmoodLab/UNI2-h\?",
    ):
        P.load_model(tiny("uni2-h"), tmp_path / "uni.bin")
    with pytest.raises(EncoderError, match=r"missing: .*reg_token"):
        load(P.with_config("uni", depth=2, embed_dim=96, num_heads=4, reg_tokens=2), sd)


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def test_safetensors_files_are_read_with_their_dtypes(tmp_path):
    tensors = {
        "a": torch.randn(3, 4),
        "b": torch.randn(5).half(),
        "c": torch.randn(2, 2).bfloat16(),
    }
    write_safetensors(tmp_path / "w.safetensors", tensors)
    got = read_state_dict(tmp_path / "w.safetensors")
    assert all(torch.equal(got[k], v) and got[k].dtype == v.dtype for k, v in tensors.items())
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(EncoderError, match="could not read the weights file"):
        read_state_dict(tmp_path / "bad.safetensors")


# ------------------------------------------------------------------------------------------------
# Weights folder, messages, fingerprints, listing, TileEncoder
# ------------------------------------------------------------------------------------------------
def test_missing_weights_say_which_file_where_and_under_which_licence(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(P.WeightsNotFoundError) as err:
        get_encoder("virchow2")
    msg = str(err.value)
    for part in (
        "pytorch_model.bin",
        "paige-ai/Virchow2",
        "CC-BY-NC-ND-4.0",
        str(tmp_path / "virchow2" / "pytorch_model.bin"),
        "--encoder virchow2:PATH",
    ):
        assert part in msg
    with pytest.raises(P.WeightsNotFoundError, match=r"nope\.bin not found"):
        get_encoder(f"uni:{tmp_path / 'nope.bin'}")


def test_weights_folder_is_searched_and_listed(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    p = tiny("phikon-v2")
    (tmp_path / "phikon-v2").mkdir()
    weights = tmp_path / "phikon-v2" / "model.safetensors"
    write_safetensors(weights, random_model(p, seed=6).state_dict())
    assert find_weights(p) == weights and find_weights(P.PRESETS["uni"]) is None
    rows = {r["name"]: r for r in describe_encoders()}
    assert rows["phikon-v2"]["weights"] == f"found: {weights}"
    assert rows["uni"]["weights"] == "missing"
    assert rows["vit-tiny-test"]["weights"].startswith("bundled")
    assert rows["virchow2"]["dim"] == 2560 and rows["conch-v1.5"]["tile_size"] == 448
    assert rows["efficientnet-lite0-multiscale"]["dim"] == 1744
    enc = P.preset_encoder(p)  # found in the folder
    assert enc.embed(np.zeros((1, 112, 112, 3), np.uint8)).shape == (1, 96)
    assert enc.tile_mpp == 0.5 and enc.id == "phikon-v2"


def test_fingerprints_name_the_weights_not_the_file(tmp_path):
    m1, m2 = random_model(tiny("uni"), 0), random_model(tiny("uni"), 0)
    assert state_dict_fingerprint(m1) == state_dict_fingerprint(m2.state_dict())
    half = {k: v.bfloat16() for k, v in m1.state_dict().items()}
    torch.save(half, tmp_path / "w.bin")
    write_safetensors(tmp_path / "w.safetensors", half)
    enc = P.preset_encoder(tiny("uni"), tmp_path / "w.bin")
    b = P.preset_encoder(tiny("uni"), tmp_path / "w.safetensors").fingerprint
    assert enc.fingerprint == b == encoder_identity(enc.id, state_dict_fingerprint(half))
    assert encoder_identity("other", state_dict_fingerprint(half)) != b  # the name counts too
    with torch.no_grad():
        m2.norm.bias[0] += 1e-3
    assert state_dict_fingerprint(m1) != state_dict_fingerprint(m2)


def test_encoder_specs():
    assert split_encoder_spec("uni:/data/w.bin") == ("uni", Path("/data/w.bin"))
    assert split_encoder_spec("efficientnet-lite0:w.pth") == ("efficientnet-lite0", Path("w.pth"))
    assert split_encoder_spec("timm:vit_small") == ("timm:vit_small", None)
    assert split_encoder_spec("C:/models/enc.pt") == ("C:/models/enc.pt", None)
    assert split_encoder_spec("virchow2") == ("virchow2", None)


def test_tiny_test_preset_is_a_seeded_tile_encoder():
    enc = get_encoder("vit-tiny-test")
    again = P.preset_encoder("vit-tiny-test")
    tiles = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    feats = enc.embed(tiles)
    assert feats.shape == (3, 128) and feats.dtype == np.float32 and enc.dim == 128
    assert np.array_equal(feats, again.embed(tiles))
    assert enc.fingerprint == again.fingerprint
    assert enc.id == "vit-tiny-test" and enc.tile_size == 224 and enc.batch_size == 32


def test_tiny_configs_equal_timm_when_timm_is_importable():
    try:
        import timm
    except Exception:  # not installed, or torchvision failing inside it
        pytest.skip("timm is not importable here")
    for name in ("uni2-h", "virchow2", "prov-gigapath"):
        p = tiny(name)
        arch, kwargs = p.timm
        kwargs = {
            **kwargs,
            "depth": 2,
            "embed_dim": 96,
            "num_heads": 4,
            "img_size": 112,
            "dynamic_img_size": True,
        }
        named = {"SwiGLUPacked": timm.layers.SwiGLUPacked, "SiLU": torch.nn.SiLU}
        kwargs = {k: named.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
        ref = timm.create_model(arch, pretrained=False, **kwargs).eval()
        ours = load(p, ref.state_dict())
        for size in (112, 10 * p.vit.patch_size):
            x = images(n=1, size=size)
            with torch.no_grad():
                out = ref(x)
                if p.vit.pool == "cls+mean":
                    out = torch.cat([out[:, 0], out[:, p.vit.num_prefix_tokens :].mean(1)], 1)
                assert (ours(x) - out).abs().max() <= 1e-5, (name, size)
