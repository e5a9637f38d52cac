"""Architectures: the depth of the cnn's stages."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.models import ModelOptions, build, with_flip_average


def test_cnn_stage_convs_set_the_depth_of_each_stage() -> None:
    default, deeper = build("cnn", ModelOptions()), build("cnn", ModelOptions(stage_convs=(3, 3, 3, 2)))
    convs = [[layer.name for layer in model.layers if "_conv" in layer.name] for model in (default, deeper)]
    assert len(convs[0]) == 8 and len(convs[1]) == 11
    assert "stage2_conv2" in convs[1] and "stage3_conv2" not in convs[1]
    assert default.count_params() == 1_176_359 and deeper.count_params() == 1_370_791


@pytest.mark.parametrize("counts", [(3, 3), (2, 2, 5, 2), (0, 2, 2, 2)])
def test_cnn_stage_convs_are_checked(counts: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="stage-convs: expected four counts of 1-4"):
        ModelOptions(stage_convs=counts)


def test_flip_average_pairs_each_face_with_its_own_mirror() -> None:
    model = build("cnn", ModelOptions(width=0.25))
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 1)).astype(np.float32)
    mirrors = faces[:, :, ::-1]
    expected = (model.predict(faces, verbose=0) + model.predict(mirrors, verbose=0)) / 2
    np.testing.assert_allclose(with_flip_average(model).predict(faces, verbose=0), expected, atol=1e-5)
