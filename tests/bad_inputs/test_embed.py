"""`histostain embed` never mixes slides: cache entries are keyed by the slide's identity (its path
relative to the manifest's folder, else its absolute path), not its file name; two slides that
would share an entry are an error naming both, before anything is written."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bad_inputs.kit import files_in
from napari_histostain.training.cache import CacheError, EmbeddingCache, SlideEmbeddings


def _manifest(path, he, ihc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(  # two cases of the same slides: the manifest needs two classes
        f"case_id,marker,he_path,ihc_path,label\nc1,ki67,{he},{ihc},1\nc2,ki67,{he},{ihc},0\n"
    )
    return path


@pytest.fixture(scope="module")
def two_slides_named_s(tmp_path_factory):
    """Two different slides, both named s.tif, in two folders."""
    from napari_histostain.io.synthetic import write_synthetic_slide

    d = tmp_path_factory.mktemp("same-names")
    for folder, seed in (("a", 1), ("b", 2)):
        (d / folder).mkdir()
        write_synthetic_slide(d / folder / "s.tif", 768, 512, 0.5, seed=seed)
    return d


def test_same_file_name_in_two_folders_outside_the_manifest(cli, two_slides_named_s, kit, tmp_path):
    """The audit: the second s.tiff overwrote the first's cache file."""
    a, b = two_slides_named_s / "a" / "s.tif", two_slides_named_s / "b" / "s.tif"
    manifest = _manifest(tmp_path / "elsewhere" / "cohort.csv", a, b)
    cache = tmp_path / "cache"
    argv = ["embed", manifest, "--cache", cache, "--encoder", kit["encoder"], "--quiet"]
    r = cli(*argv)
    assert r.code == 0 and r.out.startswith("embedded 2 slide(s)")
    entries = [f for f in files_in(cache) if f.endswith(".npz")]
    assert len(entries) == 2 and all(f.startswith("s.tif-") for f in entries)
    c = EmbeddingCache.open(cache, root=manifest.parent)
    ea, eb = c.load(a), c.load(b)
    assert ea.meta["slide_id"] == a.as_posix() and eb.meta["slide_id"] == b.as_posix()
    assert not np.array_equal(ea.features, eb.features)
    assert cli(*argv).out.startswith("embedded 0 slide(s)")  # both found again on resume


def test_two_slides_sharing_an_entry_is_an_error_naming_both(
    cli, two_slides_named_s, kit, tmp_path
):
    root = tmp_path / "cohort"
    (root / "a").mkdir(parents=True)
    shutil.copy(two_slides_named_s / "a" / "s.tif", root / "a" / "s.tif")
    shutil.copy(two_slides_named_s / "b" / "s.tif", root / "a__s.tif")  # made safe: same key
    manifest = _manifest(root / "cohort.csv", "a/s.tif", "a__s.tif")
    cache = tmp_path / "cache"
    r = cli("embed", manifest, "--cache", cache, "--encoder", kit["encoder"], "--quiet")
    assert r.code == 2
    assert r.error_lines == [
        "histostain: error: slides a/s.tif and a__s.tif would share the embedding cache entry "
        "a__s.tif.npz; rename one of them."
    ]
    assert files_in(cache) == []


def test_an_entry_of_another_slide_is_never_served(tmp_path):
    root = tmp_path / "cohort"
    cache = EmbeddingCache(tmp_path / "cache", encoder_id="e", encoder_version="1", root=root)
    cache.check_or_create()
    emb = SlideEmbeddings(np.ones((2, 4)), np.zeros((2, 2), np.int64), np.ones(2, np.float32))
    cache.save(root / "a" / "s.tif", emb)
    # the same entry file, reached by another slide (e.g. a renamed folder): refused, both named
    shutil.move(cache.path_for(root / "a" / "s.tif"), cache.path_for(root / "a__s.tif"))
    with pytest.raises(CacheError, match=r"holds the embeddings of a/s.tif, not of a__s.tif"):
        cache.has(root / "a__s.tif")
    with pytest.raises(CacheError, match=r"holds the embeddings of a/s.tif, not of a__s.tif"):
        cache.load(root / "a__s.tif")
