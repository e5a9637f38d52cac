"""Architectures: the depth of the cnn's stages, and the test-time views wrapped around a network."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.models import ModelOptions, build, view_matrix, with_flip_average


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


@pytest.mark.parametrize(("crop", "blur"), [(44, 0.0), (47, 0.5), (46, 0.7), (40, 1.3)])
def test_view_matrix_crops_scales_and_blurs_as_cv2(crop: int, blur: float) -> None:
    """The view applied as one matrix per axis is cv2's crop, bilinear resize and Gaussian blur to within a
    grey level, and each row is whole multiples of its int8 step (at most 127 of them) summing to exactly 1."""
    import cv2

    faces = np.random.default_rng(1).integers(0, 256, (4, 48, 48)).astype(np.float32)
    start = (48 - crop) // 2
    expected = [cv2.resize(face[start:start + crop, start:start + crop], (48, 48), interpolation=cv2.INTER_LINEAR)
                for face in faces]
    if blur:
        expected = [cv2.GaussianBlur(view, (0, 0), blur, borderType=cv2.BORDER_REFLECT) for view in expected]
    matrix = view_matrix(crop, blur)
    views = matrix @ faces @ matrix.T
    assert np.abs(views - np.stack(expected)).max() < 1.5
    assert np.abs(views - np.stack(expected)).mean() < 0.25
    steps = np.round(127 / matrix.max(axis=1))[:, None]
    np.testing.assert_allclose(matrix * steps, np.round(matrix * steps), atol=1e-9)
    np.testing.assert_allclose(matrix.max(axis=1), 127 / steps[:, 0])
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
