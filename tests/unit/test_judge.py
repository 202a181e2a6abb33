import numpy as np
import torch

from erasekit.testbed import data
from erasekit.testbed.judge import Judge, accuracy, procedural_set, to_tensor


def test_shipped_judge_is_accurate_on_fresh_images(shipped_judge):
    x, attrs = procedural_set(600, seed=424242, progress=False)
    acc = accuracy(shipped_judge, x, attrs)
    assert set(acc) == {"shape", "colour", "background"}
    for family, value in acc.items():
        assert value >= 0.99, (family, value)


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
