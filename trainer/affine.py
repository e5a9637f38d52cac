"""One random affine warp per face (rotation, shift, shear, zoom composed), so each face is resampled once."""

from __future__ import annotations

import math

import keras
import tensorflow as tf


class RandomAffine(keras.layers.Layer):
    """The tutorial's geometric augmentation as a single bilinear resampling: chaining one layer per transform
    resamples each face four times, and every resampling blurs it."""

    def __init__(self, degrees: float = 10.0, shift: float = 0.1, shear: float = 0.1, zoom: float = 0.1,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.degrees, self.shift, self.shear, self.zoom = degrees, shift, shear, zoom

    def call(self, images, training: bool = True):
        if not training:
            return images
        count = tf.shape(images)[0]
        height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)

        def uniform(reach: float):
            return tf.random.uniform([count], -reach, reach)

        angle = uniform(math.radians(self.degrees))
        shear_x, shear_y = uniform(self.shear), uniform(self.shear)
        scale = 1.0 + uniform(self.zoom)
        shift_x, shift_y = uniform(self.shift) * width, uniform(self.shift) * height
        cos, sin = tf.cos(angle), tf.sin(angle)
        # output pixel -> input pixel: rotation · shear · scale about the centre, then the shift
        a0 = scale * (cos - sin * shear_y)
        a1 = scale * (cos * shear_x - sin)
        b0 = scale * (sin + cos * shear_y)
        b1 = scale * (sin * shear_x + cos)
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        a2 = centre_x + shift_x - a0 * centre_x - a1 * centre_y
        b2 = centre_y + shift_y - b0 * centre_x - b1 * centre_y
        zeros = tf.zeros_like(angle)
        transform = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="nearest")

    def get_config(self) -> dict:
        return super().get_config() | {"degrees": self.degrees, "shift": self.shift, "shear": self.shear,
                                       "zoom": self.zoom}
