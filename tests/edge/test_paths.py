"""edge.paths: the shipped config.toml and models are found from a checkout and from a regular install."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.classify import ClassifierOptions, EmotionClassifier
from edge.config import Config
from edge.detect import BLAZEFACE_MODEL, crop
from edge.manifest import FER2013_LABELS
from edge.paths import CHECKOUT, INSTALLED, MODELS, ROOT, data_root
from tests.edge.test_detect import ground_truth


def test_a_checkout_keeps_its_data_beside_the_package(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    assert data_root(tmp_path, tmp_path / "share" / "fer-edge") == tmp_path


def test_an_installed_package_finds_its_data_in_the_share_folder(tmp_path: Path) -> None:
    """Pins the gap of issue 7: after `pip install .[edge]`, edge/ sits in site-packages, which holds no
    models/, so paths built from the package's parent named files that were never installed."""
    site_packages = tmp_path / "lib" / "python3.11" / "site-packages"
    site_packages.mkdir(parents=True)
    share = tmp_path / "share" / "fer-edge"
    assert data_root(site_packages, share) == share


def test_the_defaults_name_shipped_files_that_exist() -> None:
    assert ROOT in (CHECKOUT, INSTALLED)
    model = Config().classifier.model
    assert model == MODELS / "fer_cnn_int8.tflite"
    for path in (model, model.with_suffix(".json"), BLAZEFACE_MODEL, ROOT / "config.toml"):
        assert path.is_file(), path


def test_the_shipped_model_classifies_the_annotated_faces_on_litert() -> None:
    crops = []
    for path, boxes in ground_truth().items():
        frame = cv2.imread(str(path))
        crops += [region for box in boxes if (region := crop(frame, box, 0.1)) is not None]
    with EmotionClassifier.create(ClassifierOptions(model=MODELS / "fer_cnn_int8.tflite")) as classifier:
        probabilities = classifier.classify(crops)
        assert classifier.runtime == "ai_edge_litert" and classifier.labels == FER2013_LABELS
    assert probabilities.shape == (18, 7)
    assert np.all(probabilities >= 0) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
