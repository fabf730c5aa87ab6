"""RT-DETR as a detectron2 meta-architecture (list[dict] in, losses / Instances out).

Eval-size policy: the official RT-DETR resizes every eval image to the eval size (640x640,
aspect ratio not kept) and maps the normalized boxes straight to the original image size. Our
test pipeline does that resize; with ``eval_size`` set the model also resizes (bilinear,
antialiased) any eval image that arrives at another size, as the official does. Otherwise
(``eval_size=None``) images of a batch that differ in size are padded at the bottom/right to a
common size (a multiple of the backbone's ``size_divisibility``); the normalized boxes refer to
the padded canvas and are mapped back through each image's own input size to its original
"height"/"width", so padding never distorts the boxes (anchors still cover the padded area).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances
from torch import nn
from torchvision.ops import box_convert

from ..errors import ConfigError
from .layers import fold_conv_norms
from .postprocess import RTDETRPostProcessor

__all__ = ["RTDETR"]


def _to_float32(outputs):
    """Floating-point tensors of a nested dict / list structure as float32 (others unchanged)."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: _to_float32(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_to_float32(v) for v in outputs)
    return outputs


class RTDETR(nn.Module):
    """Backbone -> hybrid encoder -> RT-DETR decoder, with criterion and post-processing.

    Args:
        backbone: detectron2 ``Backbone`` returning {name: (B, C, H, W)}.
        encoder: takes the list of ``in_features`` maps, returns a list of maps.
        decoder: ``RTDETRTransformer`` (v1 or v2).
        criterion: ``RTDETRCriterion``.
        num_classes: K; must equal the decoder's and the criterion's.
        num_top_queries: detections kept per image at eval.
        pixel_mean, pixel_std: normalization, (image - mean) / std on 0..255 RGB input.
        in_features: backbone outputs fed to the encoder, finest first (default: all, by stride).
        eval_size: (H, W); at eval, images of another size are resized to it (None: pad instead).
        size_divisibility: pad inputs to a multiple of this (default: the backbone's, at least 32).
        channels_last: feed the images to the backbone channels-last, so the convolutions (and
            their gradients) run in that layout: True, False, or None for "on CPU only" (oneDNN's
            fastest layout, ~8% faster training steps; on GPU the NCHW of the official code, set
            True for tensor-core AMP training). :meth:`deploy` sets True. Outputs are the same up
            to float rounding.
    """

    def __init__(
        self,
        backbone: nn.Module,
        encoder: nn.Module,
        decoder: nn.Module,
        criterion: nn.Module,
        num_classes: int,
        num_top_queries: int = 300,
        pixel_mean: Sequence[float] = (0.0, 0.0, 0.0),
        pixel_std: Sequence[float] = (255.0, 255.0, 255.0),
        in_features: Optional[Sequence[str]] = None,
        eval_size: Optional[Sequence[int]] = None,
        size_divisibility: Optional[int] = None,
        channels_last: Optional[bool] = None,
    ):
        super().__init__()
        sources = {
            "model": num_classes,
            "decoder": getattr(decoder, "num_classes", num_classes),
            "criterion": getattr(criterion, "num_classes", num_classes),
        }
        if len(set(sources.values())) != 1:
            raise ValueError(
                "num_classes disagree: "
                + ", ".join(f"{k}.num_classes={v}" for k, v in sources.items())
                + ". Set the same value on the model, its decoder and its criterion."
            )
        self.backbone = backbone
        self.encoder = encoder
        self.decoder = decoder
        self.criterion = criterion
        self.num_classes = num_classes
        self.postprocessor = RTDETRPostProcessor(num_classes, num_top_queries)
        if in_features is None:
            shapes = backbone.output_shape()
            in_features = sorted(shapes, key=lambda k: shapes[k].stride)
        self.in_features = list(in_features)
        self._check_wiring()
        div = size_divisibility or getattr(backbone, "size_divisibility", 0) or 32
        self.size_divisibility = max(int(div), 32)
        self.eval_size = tuple(int(v) for v in eval_size) if eval_size else None
        if self.eval_size and any(v % self.size_divisibility for v in self.eval_size):
            raise ValueError(f"eval_size {self.eval_size} must be a multiple of {self.size_divisibility}.")
        self.channels_last = channels_last
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    def _check_wiring(self) -> None:
        """The encoder must expect the maps the backbone gives (channels and strides, in
        ``in_features`` order) and the decoder the strides the encoder gives; a mismatch is a
        config mistake, reported here rather than as a shape error in the first forward."""
        if not hasattr(self.backbone, "output_shape"):
            return
        shapes = self.backbone.output_shape()
        unknown = [f for f in self.in_features if f not in shapes]
        if unknown:
            raise ConfigError(f"model.in_features {unknown} are not backbone outputs {list(shapes)}.")
        channels = [int(shapes[f].channels) for f in self.in_features]
        strides = [int(shapes[f].stride) for f in self.in_features]
        enc_channels = getattr(self.encoder, "in_channels", None)
        enc_strides = getattr(self.encoder, "feat_strides", None)
        if (enc_channels is not None and list(enc_channels) != channels) or (
            enc_strides is not None and list(enc_strides) != strides
        ):
            raise ConfigError(
                f"The encoder expects maps with in_channels={list(enc_channels)} at feat_strides="
                f"{list(enc_strides)}, but the backbone ({type(self.backbone).__name__}) gives "
                f"{channels} at {strides} for in_features {self.in_features}. Leave "
                "model.encoder.in_channels / feat_strides to the backbone (\"${backbone_channels:${..backbone}}\" / "
                "\"${backbone_strides:${..backbone}}\", as in configs/models/rtdetr_r50vd.py) or set them to these values."
            )
        out_strides = getattr(self.encoder, "out_strides", None)
        dec_strides = getattr(self.decoder, "feat_strides", None)
        if out_strides is not None and dec_strides is not None and list(dec_strides[: len(out_strides)]) != list(out_strides):
            raise ConfigError(
                f"model.decoder.feat_strides {list(dec_strides)} do not match the encoder's output strides "
                f"{list(out_strides)}; use \"${{..encoder.feat_strides}}\" or these values."
            )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def uses_channels_last(self, device: Union[str, torch.device]) -> bool:
        """Whether :meth:`forward_raw` feeds images on ``device`` channels-last (``channels_last``)."""
        if self.channels_last is None:
            return torch.device(device).type == "cpu"
        return bool(self.channels_last)

    # ---------------------------------------------------------------- raw (official-style) path
    def forward_raw(self, images: torch.Tensor, targets: Optional[List[Dict[str, torch.Tensor]]] = None) -> dict:
        """Official-style forward.

        Args:
            images: (B, 3, H, W) normalized input (RT-DETR: RGB in [0, 1]); H, W multiples of 32.
            targets: training only, per image {"labels": (T,), "boxes": (T, 4) normalized cxcywh}.

        Returns:
            {"pred_logits": (B, Q, K), "pred_boxes": (B, Q, 4) normalized cxcywh, ...aux in training}.
        """
        if self.uses_channels_last(images.device):
            images = images.contiguous(memory_format=torch.channels_last)
        feats = self.backbone(images)
        if isinstance(feats, dict):
            missing = [f for f in self.in_features if f not in feats]
            if missing:
                raise KeyError(f"Backbone outputs {list(feats)} lack in_features {missing}.")
            feats = [feats[f] for f in self.in_features]
        feats = self.encoder(feats)
        return self.decoder(feats, targets)

    # ---------------------------------------------------------------- detectron2 path
    def preprocess_image(self, batched_inputs: List[dict]) -> Tuple[torch.Tensor, List[Tuple[int, int]]]:
        """Normalize and pad bottom/right to a common size. Returns (B, 3, Hp, Wp), [(h, w)] per image."""
        images = []
        for x in batched_inputs:
            img = x["image"]
            if img.dim() != 3 or img.shape[0] != 3:
                raise ValueError(f"'image' must be a (3, H, W) RGB tensor, got shape {tuple(img.shape)}.")
            img = img.to(self.device, non_blocking=True).float()
            if not self.training and self.eval_size and tuple(img.shape[1:]) != self.eval_size:
                img = F.interpolate(
                    img[None], size=self.eval_size, mode="bilinear", align_corners=False, antialias=True
                )[0]
            images.append(img)
        sizes = [(int(i.shape[1]), int(i.shape[2])) for i in images]
        d = self.size_divisibility
        max_h = -(-max(s[0] for s in sizes) // d) * d
        max_w = -(-max(s[1] for s in sizes) // d) * d
        if all(s == (max_h, max_w) for s in sizes):
            batch = torch.stack(images)
            return (batch - self.pixel_mean) / self.pixel_std, sizes
        # pad after normalization so padded pixels are 0 in model space
        batch = images[0].new_zeros(len(images), 3, max_h, max_w)
        for b, img in zip(batch, images):
            b[:, : img.shape[1], : img.shape[2]] = (img - self.pixel_mean) / self.pixel_std
        return batch, sizes

    def prepare_targets(self, batched_inputs: List[dict], canvas_hw: Tuple[int, int]) -> List[Dict[str, torch.Tensor]]:
        """Instances (XYXY pixels) -> {"labels", "boxes" cxcywh normalized by the padded canvas}."""
        h, w = canvas_hw
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=self.device)
        targets = []
        for x in batched_inputs:
            if "instances" not in x:
                raise KeyError("Training inputs need an 'instances' field (gt_boxes, gt_classes).")
            inst = x["instances"].to(self.device)
            # convert in pixels, then normalize: the official ConvertBoxes order (same float rounding)
            cxcywh = box_convert(inst.gt_boxes.tensor.float(), "xyxy", "cxcywh") / scale
            labels = inst.gt_classes.long()
            if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(
                    f"gt_classes must be contiguous ids in [0, {self.num_classes}), got range "
                    f"[{int(labels.min())}, {int(labels.max())}]."
                )
            targets.append({"labels": labels, "boxes": cxcywh})
        return targets

    def forward(self, batched_inputs: List[dict]):
        """Training: dict of weighted losses. Eval: [{"instances": Instances}] in original pixels."""
        images, sizes = self.preprocess_image(batched_inputs)
        canvas = (images.shape[2], images.shape[3])
        if self.training:
            targets = self.prepare_targets(batched_inputs, canvas)
            outputs = self.forward_raw(images, targets)
            # Under mixed precision the losses (and the matching) are computed in float32 outside
            # autocast, as the official training loop does; a no-op in float32 training.
            with torch.autocast(images.device.type, enabled=False):
                return self.criterion(_to_float32(outputs), targets)
        outputs = self.forward_raw(images)
        return self.inference(outputs, batched_inputs, sizes, canvas)

    def inference(
        self, outputs: dict, batched_inputs: List[dict], sizes: List[Tuple[int, int]], canvas: Tuple[int, int]
    ) -> List[Dict[str, Instances]]:
        """Top-K detections; boxes scaled from the padded canvas to each original image size."""
        ch, cw = canvas
        # normalized canvas coords -> original pixels: x * cw * (orig_w / in_w)
        factors = []
        orig_sizes = []
        for x, (h, w) in zip(batched_inputs, sizes):
            oh, ow = int(x.get("height", h)), int(x.get("width", w))
            orig_sizes.append((oh, ow))
            factors.append([cw * ow / w, ch * oh / h])
        factors = torch.tensor(factors, dtype=torch.float32, device=outputs["pred_boxes"].device)
        scores, labels, boxes, _ = self.postprocessor(outputs, factors)
        results = []
        for s, l, b, (oh, ow) in zip(scores, labels, boxes, orig_sizes):
            inst = Instances((oh, ow))
            b = Boxes(b.float())
            b.clip((oh, ow))
            inst.pred_boxes = b
            inst.scores = s.float()
            inst.pred_classes = l
            results.append({"instances": inst})
        return results

    def deploy(self, channels_last: bool = True) -> "RTDETR":
        """The inference form (eval mode, outputs unchanged up to float rounding, <= 1e-4):

        * RepVGG blocks of the encoder re-parameterised into single 3x3 convs; D-FINE decoder
          layers after ``eval_idx`` (training only) removed;
        * every BatchNorm folded into the conv before it (:func:`fold_conv_norms`);
        * channels-last memory for the weights and, in :meth:`forward_raw`, the images, so every
          conv runs in the layout the CPU (oneDNN) and tensor-core kernels are fastest in, and the
          token views of the maps (encoder, decoder memory, MLLA) need no copies.

        Train again only from a freshly built model: folded BatchNorms no longer update.
        """
        self.eval()
        for part in (self.encoder, self.decoder):  # RepVGG folding; D-FINE drops its training-only layers
            if hasattr(part, "deploy"):
                part.deploy()
        fold_conv_norms(self)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        return self.eval()  # the modules the folding created are in eval mode too
