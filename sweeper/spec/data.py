"""The ``data`` section of a sweep file: which images to train on, and where they are.

Only the section's own consistency is checked here (what each source needs, what only applies to
some); the files themselves are read and checked by :mod:`sweeper.plan.data` through
:func:`cnn.load_source`.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from annotated_types import Gt, Lt
from pydantic import AllowInfNan, Field, Strict, ValidationInfo, field_validator

from sweeper.spec.fields import Fraction, PositiveInt, Section, at_most
from sweeper.spec.yamlsource import located_error

#: Images in each source before any subsampling: (train, test). ``bundled`` is the subset shipped
#: in the ``cnn`` package; ``mnist`` the full data set; ``cifar10`` the binary CIFAR-10.
DATASET_SIZES = {"bundled": (6000, 1000), "mnist": (60000, 10000), "cifar10": (50000, 10000)}
#: Input shapes (C, H, W) known without reading the files; other sources take theirs from the data.
KNOWN_SHAPES = {"bundled": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
#: Sources read from ``data.path`` (``mnist`` looks there first, then downloads).
PATH_SOURCES = ("idx", "npz", "folder", "cifar10")
#: The test share split off a source without a test split of its own (npz, folder), by default.
TEST_FRACTION = 0.2
#: Images are held in memory as uint8, C x H x W bytes each: bounds on what a file may ask for.
MAX_SIDE = at_most(4096, "pixels per side of an image held in memory")
MAX_CHANNELS = at_most(4, "channels: gray, RGB or RGBA")
MAX_SIZE = at_most(10_000_000, "images held in memory at once")


def _only_for(sources: tuple[str, ...], what: str):
    """A field validator: a value other than the default only makes sense for ``sources``."""

    def check(cls, value, info: ValidationInfo):
        source = info.data.get("source")
        default = cls.model_fields[info.field_name].default
        if value != default and source is not None and source not in sources:
            raise located_error([((), f"only used by source {' and '.join(sources)} ({what})")])
        return value

    return check


class DataConfig(Section):
    """Which images to train on. Sizes are stratified subsamples; validation comes out of training.

    ``path`` (relative to the current folder): the IDX folder (``idx``, ``mnist``), the ``.npz``
    file (``npz``), the folder of class subfolders (``folder``) or of the ``*.bin`` files
    (``cifar10``). The input shape comes from the data; ``input_shape`` states what it must be.
    """

    source: Literal["bundled", "mnist", "idx", "npz", "folder", "cifar10"] = "bundled"
    path: Optional[str] = Field(None, validate_default=True)
    test_path: Optional[str] = None
    label_offset: Annotated[int, Strict(), Field(ge=-1000, le=1000)] = 0
    resize: Optional[tuple[Annotated[PositiveInt, MAX_SIDE], Annotated[PositiveInt, MAX_SIDE]]] = None
    test_fraction: Optional[Annotated[float, Strict(), AllowInfNan(False), Gt(0), Lt(1)]] = None
    input_shape: Optional[tuple[Annotated[PositiveInt, MAX_CHANNELS], Annotated[PositiveInt, MAX_SIDE],
                                Annotated[PositiveInt, MAX_SIDE]]] = None
    train_size: Optional[Annotated[PositiveInt, MAX_SIZE]] = None
    test_size: Optional[Annotated[PositiveInt, MAX_SIZE]] = None
    val_fraction: Fraction = 0.1

    @field_validator("path")
    @classmethod
    def _path_for_files(cls, path, info: ValidationInfo):
        source = info.data.get("source")
        if path is not None and source == "bundled":
            raise located_error([((), "only used by source mnist, " + ", ".join(PATH_SOURCES)
                                  + " (the bundled subset ships with the package)")])
        if path is None and source in PATH_SOURCES:
            what = {"idx": "the folder with the four IDX files", "npz": "the .npz file with arrays x and y",
                    "folder": "the folder with one subfolder of images per class",
                    "cifar10": "the folder with data_batch_*.bin and test_batch.bin"}[source]
            raise located_error([((), f"source {source} needs a path: {what}")])
        return path

    _test_path_npz = field_validator("test_path")(classmethod(_only_for(("npz",), "a second .npz holding the test split")))
    _offset_idx = field_validator("label_offset")(classmethod(_only_for(("idx",), "subtracted from every label")))
    _resize_folder = field_validator("resize")(classmethod(_only_for(("folder",), "[H, W] every image is resized to")))
    _fraction_split = field_validator("test_fraction")(classmethod(_only_for(
        ("npz", "folder"), "the test share split off when the files hold no test split")))

    @field_validator("train_size", "test_size")
    @classmethod
    def _size_within_source(cls, size, info: ValidationInfo):
        source = info.data.get("source")
        if size is not None and source in DATASET_SIZES:
            available = DATASET_SIZES[source][info.field_name == "test_size"]
            if size > available:
                raise located_error([((), f"{size} exceeds the {available} images of source {source}")])
        return size

    def sizes(self, found: Optional[tuple[int, int]] = None) -> Optional[tuple[int, int, int]]:
        """(train, validation, test) image counts after subsampling and the validation split.

        ``found``: the (train, test) images the files hold; None for a source of known size
        (the result is None when neither is known).
        """
        found = found or DATASET_SIZES.get(self.source)
        if found is None:
            return None
        train, test = min(self.train_size or found[0], found[0]), min(self.test_size or found[1], found[1])
        val = round(self.val_fraction * train)
        return train - val, val, test

    def assumed_shape(self) -> Optional[tuple[int, int, int]]:
        """The input shape (C, H, W) this section states or its source implies; None: read the data."""
        return self.input_shape or KNOWN_SHAPES.get(self.source)
