"""The two-block test network (tests/cnn/test_model.py's ``small_spec``, tests/cnn/test_colour.py's
``rgb_spec``) written again in PyTorch, the reference the whole model is checked against:
conv (same) + ReLU, max or average pooling; conv (stride 2, padding 1) + sigmoid, L2 pooling;
a ReLU dense layer; the logits.
"""


def torch_params(model) -> dict:
    """The model's parameters as PyTorch leaves that collect gradients, by the model's names."""
    import torch

    return {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in model.state_dict().items()}


def torch_logits(x, p: dict, pool: str):
    """Logits of the network for the input tensor ``x``; ``pool``: the first block's, max or avg."""
    import torch

    F = torch.nn.functional
    h = torch.relu(F.conv2d(x, p["block1.conv.W"], p["block1.conv.b"], padding="same"))
    h = F.max_pool2d(h, 2) if pool == "max" else F.avg_pool2d(h, 2)
    h = torch.sigmoid(F.conv2d(h, p["block2.conv.W"], p["block2.conv.b"], stride=2, padding=1))
    h = F.lp_pool2d(h, 2, 2)
    h = torch.relu(F.linear(torch.flatten(h, 1), p["dense1.W"], p["dense1.b"]))
    return F.linear(h, p["logits.W"], p["logits.b"])
