import numpy as np
import torch

from erasekit.testbed import data
from erasekit.testbed.judge import IGNORE, Judge, accuracy, audit, fade, labels_of, procedural_set, to_tensor


def test_shipped_judge_is_accurate_on_fresh_images(shipped_judge):
    x, attrs, kinds = procedural_set(600, seed=424242, progress=False)
    acc = accuracy(shipped_judge, x, attrs, kinds)
    assert set(acc) == {"shape", "colour", "background"}
    for family, value in acc.items():
        assert value >= 0.99, (family, value)


def test_shipped_judge_none_head_faded_shapes_and_false_positives(shipped_judge):
    """The bars of judge.json, on 200 fresh images per case: ``none`` on blobs, blanks, fragments
    and noise; skulls and logos at 40% contrast; no skull or logo on noise, blank and blob images."""
    assert shipped_judge.families["shape"][-1] == "none"
    result = audit(shipped_judge, 200, seed=515151, progress=False)
    for kind, rate in result["none"].items():
        assert rate >= 0.97, (kind, rate)
    for concept in ("skull", "logo"):
        assert result["faded"][concept]["0.4"] >= 0.95, (concept, result["faded"][concept])
        for kind, rate in result["false_positives"][concept].items():
            assert rate <= 0.01, (concept, kind, rate)


def test_labels_leave_out_what_a_none_image_lacks():
    attrs = [data.Attributes("none", "red", "dots")] * 3 + [data.Attributes("skull", "red", "dots")]
    labels = labels_of(attrs, ["noise", "empty", "blob", None])
    assert labels["shape"].tolist() == [8, 8, 8, 6]
    assert labels["colour"].tolist() == [IGNORE, IGNORE, 0, 0]
    assert labels["background"].tolist() == [IGNORE, 2, 2, 2]


def test_fade_pulls_towards_grey():
    x = to_tensor(data.render(data.Attributes("skull", "red", "plain"), 0)[None])
    torch.testing.assert_close(fade(x), x)
    faint = fade(x, contrast=0.4)
    assert (faint - faint.mean()).abs().max() <= 0.4 * (x - x.mean()).abs().max() + 1e-6
    grey = fade(x, saturation=0.0)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])


def test_judge_reads_known_images(shipped_judge):
    attrs = [data.Attributes("skull", "red", "stripes"), data.Attributes("logo", "cyan", "neon")]
    imgs = np.stack([data.render(a, 1) for a in attrs])
    assert shipped_judge.predict(imgs) == [a.as_dict() for a in attrs]


def test_input_formats_agree():
    img = data.render(data.Attributes("star", "blue", "dots"), 0)
    as_uint8 = to_tensor(img[None])
    as_float = to_tensor(img[None].astype(np.float32) / 255)
    from PIL import Image

    as_pil = to_tensor([Image.fromarray(img)])
    torch.testing.assert_close(as_uint8, as_float)
    torch.testing.assert_close(as_uint8, as_pil)
    assert as_uint8.shape == (1, 3, 32, 32)


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    judge = Judge().eval()
    judge.save(tmp_path)
    loaded = Judge.load(tmp_path)
    x = torch.rand(3, 3, 32, 32)
    for f in judge.families:
        torch.testing.assert_close(judge(x)[f], loaded(x)[f])
