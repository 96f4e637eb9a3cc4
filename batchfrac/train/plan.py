"""Which networks ``batchfrac train`` builds, and from which weights.

The decision depends on the bundle's state and ``--weights``:

=====================  ===================  =============================================
bundle                 ``--weights``        what trains
=====================  ===================  =============================================
none yet               ``imagenet``/PATH    transfer: ImageNet trunk (frozen) + new head
                       (default imagenet)   initialised from ImageNet's last 20 layers
none yet               ``none``             end to end: the whole B0 from random init; its
                                            trunk becomes the bundle's shared trunk
                                            (``<head>_end_to_end``), whatever the head
has a trunk            not given / ``none`` transfer on the bundle's trunk; the head starts
                                            from ImageNet's last 20 layers when the trunk
                                            is ImageNet's (and they are at hand), else from
                                            the head that defined the trunk
has a trunk            ``imagenet``/PATH    as above, but the weights must give the
                                            bundle's trunk, or :class:`BundleError`
=====================  ===================  =============================================

Training always happens on the trunk *as stored* (weight files keep large kernels in
float16), so the head learns on exactly the features that scanning will compute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from ..bundle.format import ModelBundle
from ..bundle.network import (
    build_backbone,
    build_full_model,
    build_head,
    freeze_for_transfer,
    split_backbone,
)
from ..bundle.weightfile import (
    assign_arrays,
    encode_model,
    model_arrays,
    sha256_bytes,
    storage_array,
)
from ..bundle.weights import parse_weights_option, resolve_weights
from ..enums import Head
from ..errors import BundleError

logger = logging.getLogger(__name__)

END_TO_END_SUFFIX = "_end_to_end"
TRANSFER = "transfer"
END_TO_END = "end_to_end"


@dataclass
class ModelPlan:
    """The networks to train. ``full`` is set for end-to-end training (it shares the
    trunk's and head's layers); ``new_bundle`` holds the ``create_bundle`` arguments
    (``weights_origin``, ``trunk_obtained``) when no bundle exists yet."""

    mode: str
    trunk: keras.Model
    head: keras.Model
    head_init: str
    full: keras.Model | None = None
    new_bundle: dict[str, Any] | None = None

    def describe(self) -> str:
        """One line for the user: how the trunk and the head are obtained."""
        if self.mode == END_TO_END:
            later = "" if self.head.name == Head.ROUTER.value else " (train the router next)"
            return (
                f"training {self.head.name} end to end from random weights; its trunk "
                f"becomes the bundle's shared trunk{later}"
            )
        trunk = "new ImageNet trunk" if self.new_bundle else "the bundle's frozen trunk"
        return f"training the {self.head.name} head on {trunk} (head starts from {self.head_init})"


def trunk_sha256(trunk: keras.Model) -> str:
    """sha256 of the trunk's weight file, as :mod:`.bundle` records it."""
    return sha256_bytes(encode_model(trunk))


def _as_stored(model: keras.Model) -> None:
    """Round the weights to what the weight file keeps (float16 for large kernels)."""
    arrays = {key: storage_array(value) for key, value in model_arrays(model).items()}
    assign_arrays(model, arrays, source=model.name)


def _backbone(weights: str | Path, image_size: int) -> keras.Model:
    try:
        resolve_weights(weights)
    except BundleError:
        raise
    except Exception as exc:  # Keras raises a bare Exception when a download fails.
        raise BundleError(
            f"cannot get the ImageNet weights ({exc}); on a machine without internet pass "
            "--weights PATH to a local efficientnetb0_notop.h5, or --weights none"
        ) from exc
    return build_backbone(weights, image_size)


def _body_of(head: keras.Model) -> keras.Model:
    """The last-20-layers part of a trained head (without its classifier)."""
    return keras.Model(head.inputs, head.get_layer("top_activation").output)


#: BatchNormalization momentum while training from random weights (Keras' default is 0.99).
END_TO_END_BN_MOMENTUM = 0.9


def _track_fast_statistics(model: keras.Model) -> None:
    """Let BatchNormalization's moving statistics follow a network trained from scratch.

    From random weights the activations change fast; with Keras' momentum of 0.99 the
    moving mean/variance lag so far behind after a few hundred steps that the model in
    inference mode (validation, scanning) collapses to one class while training accuracy
    climbs. Transfer learning never needs this: there every BN layer is frozen.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = END_TO_END_BN_MOMENTUM


def plan_models(
    head: Head,
    n_classes: int,
    image_size: int,
    weights: str | None,
    bundle: ModelBundle | None,
) -> ModelPlan:
    """Build the networks for training ``head`` (see the module docstring's table).

    ``weights`` is the raw ``--weights`` value (``None`` when not given). Raises
    :class:`BundleError` when the weights give a trunk other than the bundle's, or when
    ImageNet weights are needed but cannot be had.
    """
    given = parse_weights_option(weights) if weights is not None else None
    explicit_none = weights is not None and given is None
    if bundle is None:
        if explicit_none:
            backbone = build_backbone(None, image_size)
            _track_fast_statistics(backbone)
            trunk, body = split_backbone(backbone)
            new_head = build_head(body, n_classes, head.value)
            return ModelPlan(
                mode=END_TO_END,
                trunk=trunk,
                head=new_head,
                head_init="random weights",
                full=build_full_model(trunk, new_head),
                new_bundle={
                    "weights_origin": resolve_weights(None).origin(),
                    "trunk_obtained": f"{head.value}{END_TO_END_SUFFIX}",
                },
            )
        source = given if given is not None else "imagenet"
        backbone = _backbone(source, image_size)
        trunk, body = split_backbone(backbone)
        new_head = build_head(body, n_classes, head.value)
        _as_stored(trunk)
        return _transfer(
            trunk,
            new_head,
            "ImageNet's last 20 layers",
            {"weights_origin": resolve_weights(source).origin(), "trunk_obtained": None},
        )

    trunk = bundle.runtime.trunk
    origin = bundle.meta["weights_origin"]
    if given is not None:
        return _on_bundle_with(bundle, trunk, head, n_classes, given, f"--weights {weights}")
    if not explicit_none and origin["kind"] in ("imagenet", "file"):
        recorded: str | Path = "imagenet" if origin["kind"] == "imagenet" else Path(origin["file"])
        return _on_bundle_with(bundle, trunk, head, n_classes, recorded, "the bundle's origin")
    body, init = _body_from_heads(bundle)
    return _transfer(trunk, build_head(body, n_classes, head.value), init, None)


def _on_bundle_with(
    bundle: ModelBundle,
    trunk: keras.Model,
    head: Head,
    n_classes: int,
    weights: str | Path,
    why: str,
) -> ModelPlan:
    backbone = _backbone(weights, bundle.image_size)
    candidate, body = split_backbone(backbone)
    if trunk_sha256(candidate) != bundle.trunk_sha256:
        raise BundleError(
            f"{why} ({weights}) gives a trunk different from the one in bundle {bundle.path} "
            f"(trunk {bundle.trunk_sha256[:12]}, obtained "
            f"{bundle.meta['trunk']['obtained']}): a head only works on the trunk it was "
            "trained on. Leave out --weights to use the bundle's trunk, or train into a "
            "new --bundle."
        )
    return _transfer(trunk, build_head(body, n_classes, head.value), "ImageNet's last 20 layers")


def _body_from_heads(bundle: ModelBundle) -> tuple[keras.Model, str]:
    """The starting point of a head on an end-to-end trunk: the defining head's layers."""
    obtained = str(bundle.meta["trunk"]["obtained"])
    preferred = obtained.removesuffix(END_TO_END_SUFFIX)
    present = bundle.heads()
    order = [h for h in (preferred, Head.ROUTER.value) if h in present] + present
    if not order:
        trunk_only = build_backbone(None, bundle.image_size)
        return split_backbone(trunk_only)[1], "random weights"
    source = order[0]
    return _body_of(bundle.runtime.head(source)), f"the {source} head's last 20 layers"


def _transfer(
    trunk: keras.Model,
    head: keras.Model,
    head_init: str,
    new_bundle: dict[str, Any] | None = None,
) -> ModelPlan:
    trunk.trainable = False
    freeze_for_transfer(head)
    return ModelPlan(TRANSFER, trunk, head, head_init, None, new_bundle)
