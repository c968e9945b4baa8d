"""The glyph world (rkd.data.glyphs): pinned pixels, determinism, caching, splits, roles.

Renders go to a temporary cache; the datasets are built with one or two renders per
character so the whole module stays within seconds.
"""
import dataclasses
import hashlib
import itertools

import numpy as np
import pytest
import torch

from rkd.cache import canonical_json, config_digest
from rkd.data import GLYPH_DATASETS, dataset_names, get_dataset, glyphs
from rkd.data.glyphs import (
    Augmentation,
    CharacterGroup,
    CorpusSpec,
    GlyphFontsMissingError,
    fonts,
    render_corpus,
    script_characters,
)
from rkd.data.glyphs import roles as tables
from rkd.data.glyphs.scripts import SCRIPTS, Script

# fonts-noto-core installed (or $RKD_FONTS_DIR set to a copy); whether it holds every
# font of the table is a test of its own
FONTS_INSTALLED = (glyphs.default_fonts_dir() / "NotoSansEthiopic-Regular.ttf").is_file()
pytestmark = pytest.mark.skipif(
    not FONTS_INSTALLED,
    reason=f"Noto fonts missing from {glyphs.default_fonts_dir()} (apt-get install {glyphs.FONTS_PACKAGE})",
)

#: Every role's dataset built small: (name, options)
SMALL = {
    "glyphs_pretrain": {"train_renders": 1, "val_renders": 1},
    "glyphs_cub": {"renders_per_class": 1},
    "glyphs_cars": {"renders_per_class": 1},
    "glyphs_sop": {"num_classes": 40, "renders_per_class": 2},
    "glyphs_cifar100": {"train_renders": 2, "test_renders": 1},
    "glyphs_tiny_imagenet": {"train_renders": 1, "test_renders": 1},
    "glyphs_omniglot": {"renders_per_class": 1},
    "glyphs_mini_imagenet": {"renders_per_class": 1},
}
STANDS_IN_FOR = {
    "glyphs_pretrain": "ImageNet",
    "glyphs_cub": "CUB-200-2011",
    "glyphs_cars": "Cars196",
    "glyphs_sop": "Stanford Online Products",
    "glyphs_cifar100": "CIFAR-100",
    "glyphs_tiny_imagenet": "Tiny ImageNet",
    "glyphs_omniglot": "Omniglot",
    "glyphs_mini_imagenet": "miniImageNet",
}

# A small corpus whose pixels are pinned: two Ethiopic syllables in their four fonts and
# two Canadian syllabics, five renders each (every stroke option and font appears).
PINNED_SPEC = CorpusSpec(
    "pinned",
    (CharacterGroup("Ethiopic", 2, "first"), CharacterGroup("CanadianAboriginal", 2, "first")),
    renders_per_class=5,
)
PINNED_SHA256 = "46a7bf9b6b884deff73fde35aff0b25ff120af6a176b48684bbc84a74ca7cbda"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("glyph-cache")


@pytest.fixture(scope="module")
def small(cache):
    """name -> split -> dataset, each role built once with SMALL's sizes."""
    built = {}

    def get(name, split):
        key = (name, split)
        if key not in built:
            built[key] = get_dataset(name, None, split, cache_dir=cache, progress=False, **SMALL[name])
        return built[key]

    return get


def _sha256(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


# ---------------------------------------------------------------- pixels


def test_pinned_renders_have_the_pinned_digest(tmp_path):
    corpus = render_corpus(PINNED_SPEC, cache_dir=tmp_path, progress=False)
    assert corpus.images.shape == (20, 28, 28) and corpus.images.dtype == np.uint8
    config = glyphs.corpus_config(PINNED_SPEC)
    assert _sha256(corpus.images) == PINNED_SHA256, (
        "the glyph renders changed. If the rendering code changed on purpose, bump RENDER_FORMAT and re-pin; "
        f"otherwise the fonts or libraries differ from the pinned ones: {config['libraries']}, fonts "
        f"{ {k: v[:12] for k, v in config['fonts'].items()} }"
    )


def test_rendering_is_deterministic_fresh_and_from_the_cache(tmp_path):
    first = render_corpus(PINNED_SPEC, cache_dir=tmp_path, progress=False)
    assert first.path is not None and first.path.is_file()
    cached = render_corpus(PINNED_SPEC, cache_dir=tmp_path, progress=False)
    fresh = render_corpus(PINNED_SPEC, use_cache=False, progress=False)
    for other in (cached, fresh):
        np.testing.assert_array_equal(other.images, first.images)
        np.testing.assert_array_equal(other.code_points, first.code_points)
        np.testing.assert_array_equal(other.class_index, first.class_index)
    assert cached.path == first.path and fresh.path is None


def test_first_renders_do_not_depend_on_how_many_are_drawn():
    few = render_corpus(dataclasses.replace(PINNED_SPEC, renders_per_class=2), use_cache=False, progress=False)
    many = render_corpus(PINNED_SPEC, use_cache=False, progress=False)
    for c in range(len(many.code_points)):
        np.testing.assert_array_equal(few.images[few.class_index == c], many.images[many.class_index == c][:2])


def test_renders_vary_and_have_ink():
    corpus = render_corpus(PINNED_SPEC, use_cache=False, progress=False)
    per_class = corpus.images.reshape(4, 5, 28, 28).astype(int)
    # every render shows its strokes well above the noise (at most Augmentation().noise = 24)
    assert (per_class.max(axis=(2, 3)) > 4 * Augmentation().noise).all()
    for renders in per_class:  # no two renders of a class alike
        assert all((a != b).any() for a, b in itertools.combinations(renders, 2))


def test_another_seed_or_augmentation_gives_other_pixels():
    base = render_corpus(PINNED_SPEC, use_cache=False, progress=False).images
    reseeded = CorpusSpec(PINNED_SPEC.name, PINNED_SPEC.groups, 5, seed=1)
    calmer = CorpusSpec(PINNED_SPEC.name, PINNED_SPEC.groups, 5, Augmentation(noise=0))
    for spec in (reseeded, calmer):
        assert (render_corpus(spec, use_cache=False, progress=False).images != base).any()


def test_renders_cycle_through_the_fonts():
    # with noise, rotation, shear... off, renders r and r + 4 of an Ethiopic syllable are the same font
    still = Augmentation(scale_permille=(1000, 1000), stretch_permille=0, shear_permille=0, rotation_decidegrees=0,
                         shift=0, strokes=(0,), ink=(255, 255), noise=0)
    spec = CorpusSpec("still", (CharacterGroup("Ethiopic", 1, "first"),), 8, still)
    images = render_corpus(spec, use_cache=False, progress=False).images
    np.testing.assert_array_equal(images[:4], images[4:])
    assert len({im.tobytes() for im in images[:4]}) == 4  # four fonts, four drawings


# ---------------------------------------------------------------- characters


def test_characters_missing_from_a_font_are_not_used():
    # the Ethiopic fonts lack Latin capitals: they would draw the .notdef box
    mixed = Script("Mixed", SCRIPTS["Ethiopic"].fonts, ((0x0041, 0x005A), (0x1200, 0x1207)))
    assert script_characters(mixed) == tuple(range(0x1200, 0x1208))


def test_character_choice_is_deterministic_and_has_no_duplicates():
    ethiopic = script_characters("Ethiopic")
    assert ethiopic == script_characters("Ethiopic") and len(ethiopic) == len(set(ethiopic)) > 400
    assert CharacterGroup("Ethiopic", 3, "first").choose(ethiopic) == list(ethiopic[:3])
    spread = CharacterGroup("Ethiopic", 4, "spread").choose(ethiopic)
    assert spread[0] == ethiopic[0] and len(set(spread)) == 4 and spread == sorted(spread)
    with pytest.raises(ValueError, match="usable characters"):
        CharacterGroup("Ethiopic", 10_000).choose(ethiopic)
    assert CharacterGroup("Ethiopic", 10_000, limit=True).choose(ethiopic) == list(ethiopic)


def test_every_font_of_the_table_is_installed():
    files = sorted({f for script in SCRIPTS.values() for f in script.fonts})
    assert set(fonts.resolve_fonts(files, None)) == set(files)


def test_every_script_draws_enough_characters_for_its_role():
    for script in SCRIPTS:
        assert len(script_characters(script)) >= 16, script


# ---------------------------------------------------------------- roles and splits


def _role_scripts():
    return {
        "pretrain": set(tables.PRETRAIN_SCRIPTS),
        "cub": {tables.CUB_SCRIPT},
        "cars": {tables.CARS_SCRIPT},
        "sop": {tables.SOP_SCRIPT},
        "cifar100": set(tables.CIFAR100_SCRIPTS),
        "tiny_imagenet": set(tables.TINY_IMAGENET_SCRIPTS),
        "omniglot": set(tables.OMNIGLOT_BACKGROUND) | set(tables.OMNIGLOT_EVALUATION),
        "mini_imagenet": {tables.MINI_IMAGENET_SCRIPT},
    }


def test_no_script_serves_two_roles_and_every_listed_script_serves_one():
    roles = _role_scripts()
    for (a, sa), (b, sb) in itertools.combinations(roles.items(), 2):
        assert not sa & sb, f"{a} and {b} share {sa & sb}"
    assert set().union(*roles.values()) == set(SCRIPTS)
    assert not set(tables.OMNIGLOT_BACKGROUND) & set(tables.OMNIGLOT_EVALUATION)
    assert set(tables.OMNIGLOT_VAL) < set(tables.OMNIGLOT_BACKGROUND)


def test_glyph_datasets_are_registered_with_their_roles():
    assert set(GLYPH_DATASETS) == set(STANDS_IN_FOR) and set(GLYPH_DATASETS) <= set(dataset_names())
    for name, cls in GLYPH_DATASETS.items():
        assert cls.stands_in_for == STANDS_IN_FOR[name]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_splits_have_the_readers_interface(small, name):
    for split in GLYPH_DATASETS[name].splits:
        dataset = small(name, split)
        assert dataset.stands_in_for == STANDS_IN_FOR[name]
        assert dataset.images.dtype == torch.uint8 and dataset.images.shape[1:] == (1, 28, 28)
        assert dataset.targets.unique().tolist() == list(range(dataset.num_classes))
        assert len(dataset.classes) == len(set(dataset.classes)) == dataset.num_classes
        assert len(dataset.code_points) == len(dataset.class_scripts) == dataset.num_classes
        image, target = dataset[len(dataset) - 1]
        assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
        assert target == int(dataset.targets[-1])
    with pytest.raises(ValueError, match="unknown split"):
        get_dataset(name, None, "nonsense", cache_dir=None, progress=False)


@pytest.mark.parametrize("name, classes", [("glyphs_cub", (100, 100)), ("glyphs_cars", (98, 98)),
                                           ("glyphs_sop", (20, 20))])
def test_retrieval_roles_split_classes_in_halves(small, name, classes):
    train, test = small(name, "train"), small(name, "test")
    assert (train.num_classes, test.num_classes) == classes
    assert not set(train.code_points.tolist()) & set(test.code_points.tolist())
    assert max(train.code_points.tolist()) < min(test.code_points.tolist())  # first half of the classes
    assert len(train.scripts) == len(test.scripts) == 1


@pytest.mark.parametrize("name, classes, renders", [("glyphs_cifar100", 100, (2, 1)),
                                                    ("glyphs_tiny_imagenet", 200, (1, 1)),
                                                    ("glyphs_pretrain", 1353, (1, 1))])
def test_classification_roles_split_renders(small, name, classes, renders):
    first, second = (small(name, split) for split in GLYPH_DATASETS[name].splits)
    assert first.num_classes == second.num_classes == classes
    assert torch.equal(first.code_points, second.code_points)
    assert (len(first), len(second)) == (classes * renders[0], classes * renders[1])
    assert first.render_index.max() < second.render_index.min()  # other renders of the same characters


def test_cifar100_role_has_twenty_scripts_as_superclasses(small):
    train = small("glyphs_cifar100", "train")
    assert len(train.scripts) == 20
    assert torch.bincount(train.coarse_targets).tolist() == [10] * 20  # 5 classes x 2 renders each


def test_omniglot_role_splits_alphabets(small):
    train, test = small("glyphs_omniglot", "train"), small("glyphs_omniglot", "test")
    val, rest = small("glyphs_omniglot", "val"), small("glyphs_omniglot", "train_excluding_val")
    assert set(train.scripts) == set(tables.OMNIGLOT_BACKGROUND)
    assert set(test.scripts) == set(tables.OMNIGLOT_EVALUATION)
    assert set(val.scripts) == set(tables.OMNIGLOT_VAL) and set(rest.scripts) == set(train.scripts) - set(val.scripts)
    assert test.num_classes == 4 * len(set(test.code_points.tolist())) >= 4 * 400
    assert torch.bincount(test.targets).tolist() == [1] * test.num_classes  # one render per character here
    # rotations are classes: class 4k + 1 is class 4k turned 90 degrees counter-clockwise
    upright = test.images[test.targets == 0][0, 0].numpy()
    turned = test.images[test.targets == 1][0, 0].numpy()
    np.testing.assert_array_equal(turned, np.rot90(upright))
    assert test.classes[1].endswith("/rot090") and test.angles[:4] == [0, 90, 180, 270]


def test_omniglot_role_has_twenty_renders_per_character_by_default():
    assert glyphs.GlyphOmniglot.__init__.__kwdefaults__["renders_per_class"] == 20


def test_mini_imagenet_role_splits_64_16_20(small):
    splits = {s: small("glyphs_mini_imagenet", s) for s in ("train", "val", "test")}
    assert [splits[s].num_classes for s in ("train", "val", "test")] == [64, 16, 20]
    code_points = [set(d.code_points.tolist()) for d in splits.values()]
    assert all(not a & b for a, b in itertools.combinations(code_points, 2))


# ---------------------------------------------------------------- cache


def test_a_changed_config_is_not_served_a_stale_render(tmp_path):
    first = render_corpus(PINNED_SPEC, cache_dir=tmp_path, progress=False)
    other = CorpusSpec(PINNED_SPEC.name, PINNED_SPEC.groups, 5, Augmentation(noise=0))
    second = render_corpus(other, cache_dir=tmp_path, progress=False)
    assert second.path != first.path and (second.images != first.images).any()
    # an entry at the right path that records another configuration is rendered again and replaced
    first.path.write_bytes(second.path.read_bytes())
    again = render_corpus(PINNED_SPEC, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.images, first.images)
    assert render_corpus(PINNED_SPEC, cache_dir=tmp_path, progress=False).path == first.path


def test_a_truncated_cache_entry_is_rendered_again(tmp_path):
    first = render_corpus(PINNED_SPEC, cache_dir=tmp_path, progress=False)
    first.path.write_bytes(first.path.read_bytes()[:100])
    again = render_corpus(PINNED_SPEC, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.images, first.images)


def test_cache_key_holds_everything_that_decides_a_pixel():
    config = glyphs.corpus_config(PINNED_SPEC)
    assert set(config["fonts"]) == set(PINNED_SPEC.font_files)
    assert all(len(digest) == 64 for digest in config["fonts"].values())
    assert {"pillow", "freetype", "numpy", "unicode"} <= set(config["libraries"])
    assert config["spec"]["augmentation"] == dataclasses.asdict(Augmentation())
    assert config["format"] == glyphs.RENDER_FORMAT


#: digest of PINNED_SPEC's cache key without its machine-dependent parts (font file
#: digests, library versions): the spec, its scripts, the render format and the
#: measuring constants. A change here changes every cache key, and so every committed
#: number that reads renders from the cache: bump RENDER_FORMAT only on purpose.
PINNED_CONFIG_SHA256 = "2a8eabf212efa27916e39b39ae86b50cad2cf6ec49312fe73cc79a57165ba81e"


def test_the_cache_key_of_a_spec_is_pinned():
    config = glyphs.corpus_config(PINNED_SPEC)
    portable = {k: v for k, v in config.items() if k not in ("fonts", "libraries")}
    assert set(config) - set(portable) == {"fonts", "libraries"}
    assert config_digest(portable) == PINNED_CONFIG_SHA256, canonical_json(portable)


def test_a_failed_write_leaves_no_cache_entry(tmp_path, monkeypatch):
    def broken_savez(handle, **arrays):
        handle.write(b"half an entry")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        render_corpus(PINNED_SPEC, cache_dir=tmp_path, progress=False)
    # only the (empty) lock file that serialises renderers of the same corpus is left
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"] == []


# ---------------------------------------------------------------- errors and pictures


def test_missing_fonts_say_what_to_install(tmp_path, monkeypatch):
    with pytest.raises(GlyphFontsMissingError) as error:
        get_dataset("glyphs_cub", None, "train", fonts_dir=tmp_path / "nowhere", progress=False)
    message = str(error.value)
    assert "apt-get install fonts-noto-core" in message and str(tmp_path / "nowhere") in message
    assert "NotoSansEthiopic-Regular.ttf" in message and glyphs.FONTS_ENV in message
    assert isinstance(error.value, FileNotFoundError)
    monkeypatch.setenv(glyphs.FONTS_ENV, str(tmp_path))  # the variable is where it looks by default
    with pytest.raises(GlyphFontsMissingError, match="lacks 4 of the 4 font files"):
        script_characters("Ethiopic")


def test_bad_options_fail_clearly():
    with pytest.raises(ValueError, match="renders_per_class"):
        get_dataset("glyphs_cub", None, "train", renders_per_class=0)
    with pytest.raises(ValueError, match="rotations"):
        get_dataset("glyphs_omniglot", None, "train", rotations=(45,))
    with pytest.raises(ValueError, match="scale_permille"):
        Augmentation(scale_permille=(0, 10))
    with pytest.raises(ValueError, match="unknown script"):
        CharacterGroup("Klingon")


def test_sample_grid_draws_one_row_per_class(small):
    import matplotlib

    matplotlib.use("Agg")
    figure = glyphs.sample_grid(small("glyphs_cub", "test"), classes=3, per_class=1)
    assert len(figure.axes) == 3 and "CUB-200-2011" in figure._suptitle.get_text()
    figure = glyphs.sample_grid(small("glyphs_cifar100", "train"), classes=2, per_class=4)
    assert len(figure.axes) == 8
    import matplotlib.pyplot as plt

    plt.close("all")
