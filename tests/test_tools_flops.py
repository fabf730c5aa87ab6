"""FLOP and parameter counting of the tools' utils against hand counts."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mlla_rtdetr.utils.flops import RawForward, count_flops, count_parameters


class Known(nn.Module):
    """conv 3->8 (3x3, pad 1) -> depthwise 3x3 -> tokens -> linear 8->4 -> 2-head SDPA."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.dw(self.conv(x))
        t = self.fc(x.flatten(2).transpose(1, 2))  # (B, 256, 4)
        q = t.reshape(t.shape[0], 256, 2, 2).transpose(1, 2)  # (B, 2 heads, 256, 2)
        return F.scaled_dot_product_attention(q, q, q)


def test_flops_equal_hand_count():
    x = torch.rand(2, 3, 16, 16)
    rep = count_flops(Known().eval(), (x,))
    b, hw = 2, 16 * 16
    conv = b * 8 * hw * 3 * 3 * 3  # out channels * positions * kernel * in channels
    dw = b * 8 * hw * 3 * 3  # one input channel per group
    fc = b * hw * 8 * 4
    sdpa = b * 2 * hw * hw * (2 + 2)  # q@k^T and attn@v per head
    assert rep.by_module == {"conv": conv, "dw": dw, "fc": fc}
    assert rep.macs == conv + dw + fc + sdpa
    assert rep.gflops == pytest.approx(2 * (conv + dw + fc + sdpa) / 1e9)
    assert rep.by_operator["scaled_dot_product_attention"] == sdpa


class TinyDetector(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 2, stride=2, bias=False)
        self.head = nn.Linear(4, 6)
        self.backbone.weight.requires_grad_(False)

    def forward_raw(self, images):
        t = self.backbone(images).flatten(2).transpose(1, 2)
        out = self.head(t)
        return {"pred_logits": out[..., :2], "pred_boxes": out[..., 2:].sigmoid()}


def test_raw_forward_flops_per_child_and_params():
    det = TinyDetector()
    rep = count_flops(RawForward(det), (torch.rand(1, 3, 8, 8),))
    assert rep.by_module == {"backbone": 4 * 16 * 2 * 2 * 3, "head": 16 * 4 * 6}
    p = count_parameters(det)
    assert p["total"] == 4 * 3 * 2 * 2 + 4 * 6 + 6
    assert p["trainable"] == 4 * 6 + 6 and p["frozen"] == 48
    assert p["per_module"]["backbone"] == {"total": 48, "trainable": 0}


class SelectingDetector(nn.Module):
    """A conv at stride 8 and 16, and a decoder whose row-wise box head runs on the first 3 of the
    memory tokens only (as our RT-DETR decoder runs enc_bbox_head on the selected queries)."""

    def __init__(self):
        super().__init__()
        from mlla_rtdetr.modeling.layers import MLP

        self.conv8 = nn.Conv2d(3, 4, 8, stride=8, bias=False)
        self.conv16 = nn.Conv2d(3, 4, 16, stride=16, bias=False)
        self.decoder = nn.Module()
        self.decoder.feat_strides = [8, 16]
        self.decoder.enc_bbox_head = MLP(4, 5, 4, num_layers=2)

    def forward_raw(self, images):
        memory = torch.cat([self.conv8(images).flatten(2), self.conv16(images).flatten(2)], 2).transpose(1, 2)
        boxes = self.decoder.enc_bbox_head(memory[:, :3])
        return {"pred_logits": boxes[..., :2], "pred_boxes": boxes.sigmoid()}


def test_official_count_runs_the_encoder_head_on_every_token():
    from mlla_rtdetr.utils.flops import model_flops, official_gflops

    model = SelectingDetector()
    convs = 16 * 4 * 8 * 8 * 3 + 4 * 4 * 16 * 16 * 3  # positions * out channels * kernel * in channels
    per_token = 4 * 5 + 5 * 4
    tokens = 16 + 4  # 32x32 image: 4x4 at stride 8, 2x2 at stride 16
    report = model_flops(model, 32, 32)
    assert report.macs == convs + 3 * per_token and report.by_submodule["decoder.enc_bbox_head"] == 3 * per_token
    assert official_gflops(model, 32, 32) == pytest.approx(2 * (convs + tokens * per_token) / 1e9)
