"""CLIP-IQA as published (`evaluate.clip_iqa: original`, issue 21): what reaches piq's ResNet CLIP,
and a score that drops on known degradations with the smoke stand-in's fixed anchors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from facerefine.weights import clip_original as wco
from facerefine.metrics.clip_iqa import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, clip_iqa_original_scores


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("facerefine_home")
    old = os.environ.get("FACEREFINE_HOME")
    os.environ["FACEREFINE_HOME"] = str(home)
    try:
        yield wco.load_clip_original("smoke")
    finally:
        if old is None:
            os.environ.pop("FACEREFINE_HOME")
        else:
            os.environ["FACEREFINE_HOME"] = old


def test_the_standin_is_piqs_resnet_clip_and_a_file_spec_loads_the_same(clip):
    import os

    from piq.feature_extractors.clip import CLIP, ModifiedResNet

    assert isinstance(clip.model, CLIP) and isinstance(clip.model.visual, ModifiedResNet)
    (path,) = Path(os.environ["FACEREFINE_HOME"], "standins").glob(f"clip-rn-smoke-*/{wco.MODEL_FILE}")
    again = wco.load_file(path)  # an RN50.pt-style file: piq's build_model on its TorchScript state dict
    images = [wco.synthetic_photo(s) for s in range(3)]
    np.testing.assert_allclose(clip_iqa_original_scores(images, clip),
                               clip_iqa_original_scores(images, wco.OriginalClip(again, clip.tokenizer, "file")))


def test_what_reaches_the_network_is_the_full_resolution_image_normalised_once(clip):
    seen = []
    handle = clip.model.visual.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)  # not square, not 224: no resize, no crop
    try:
        clip_iqa_original_scores([image], clip)
    finally:
        handle.remove()
    (pixels,) = seen
    assert pixels.shape == (1, 3, 96, 80)
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    expected = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - mean) / std
    torch.testing.assert_close(pixels[0], expected)


def test_no_positional_embedding_reaches_the_attention_pool(clip, monkeypatch):
    calls = []
    original = clip.model.visual.attnpool.forward
    monkeypatch.setattr(clip.model.visual.attnpool, "forward",
                        lambda x, return_token=False, pos_embedding=True: calls.append(pos_embedding)
                        or original(x, return_token, pos_embedding))
    clip_iqa_original_scores([wco.synthetic_photo(0)], clip)
    assert calls == [False]


def test_prompts_are_zero_padded_token_rows_ending_at_the_highest_id(clip):
    tokens = clip.tokens(list(wco.QUALITY_PAIR))
    assert tokens.shape == (2, wco.CONTEXT_LENGTH)
    for row in tokens:
        end = int(row.argmax())  # encode_text reads the feature at the end-of-text token
        assert end > 1 and (row[end + 1:] == 0).all() and (row[:end + 1] != 0).all()


def test_mixed_sizes_in_one_batch_are_refused_not_resized(clip):
    with pytest.raises(ValueError, match="one size"):
        clip_iqa_original_scores([wco.synthetic_photo(0, 64), wco.synthetic_photo(1, 96)], clip)


@pytest.mark.parametrize("kind", ["blur", "noise"])
def test_the_score_drops_on_a_known_degradation(clip, kind):
    # held-out seeds: the stand-in's anchors were fixed on seeds 0..15
    clean = [wco.synthetic_photo(100 + s) for s in range(8)]
    degraded = [wco.degrade(im, kind, 100 + s) for s, im in enumerate(clean)]
    before, after = clip_iqa_original_scores(clean, clip), clip_iqa_original_scores(degraded, clip)
    assert ((before >= 0) & (before <= 1)).all()
    assert after.mean() < before.mean() - 0.02
    assert (after < before).mean() >= 0.75


def test_scores_do_not_depend_on_the_batch_size(clip):
    images = [wco.synthetic_photo(s) for s in range(5)]
    np.testing.assert_allclose(clip_iqa_original_scores(images, clip, batch_size=2),
                               clip_iqa_original_scores(images, clip, batch_size=5), atol=1e-5)
