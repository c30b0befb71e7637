"""CLIP-IQA sees the image: CLIP's own pixel normalisation, one scaling, and a score that
moves when the image does (issue 13, item 1)."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from facerefine.metrics.clip_iqa import clip_iqa_scores
from facerefine.weights import clip, standins


def random_image(seed: int = 0, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def smooth_image(seed: int = 0, size: int = 256) -> Image.Image:
    """A photo-like image: smooth colour gradients plus texture, so blur and noise change it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * x + 1), np.cos(5 * y), np.sin(4 * (x + y))], -1) * 80 + 128
    return Image.fromarray(np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8))


PROJ = 2048


@pytest.fixture(scope="module")
def clip224(tmp_path_factory):
    """A fixed (seeded) random CLIP with ViT-B/16's input geometry and the default
    CLIPImageProcessor (224² crop, OpenAI mean/std), narrow so that it runs in a second.

    The wide projection keeps random embeddings nearly orthogonal (cosines ~ 1/sqrt(2048)),
    so 100·cos does not saturate the softmax the way a 32-wide random CLIP does (scores of
    1e-11 whatever the image)."""
    from transformers import (AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                              CLIPTextConfig, CLIPVisionConfig)

    tok_dir = tmp_path_factory.mktemp("clip_tok")
    vocab = standins.write_clip_tokenizer(tok_dir / "tok")
    torch.manual_seed(0)
    text = CLIPTextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                          num_hidden_layers=2, max_position_embeddings=77, projection_dim=PROJ,
                          bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                              image_size=224, patch_size=16, projection_dim=PROJ)
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=PROJ))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(),
                              tokenizer=AutoTokenizer.from_pretrained(tok_dir / "tok"))
    return model.eval(), processor


def captured_pixels(model, processor, images) -> torch.Tensor:
    """The pixel_values that reach CLIP's vision model, captured by a forward hook."""
    seen = []

    def hook(module, args, kwargs):
        seen.append((kwargs.get("pixel_values") if "pixel_values" in kwargs else args[0]).detach().clone())

    handle = model.vision_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        clip_iqa_scores(images, model, processor)
    finally:
        handle.remove()
    assert seen, "CLIP's vision model was never called"
    return torch.cat(seen)


def test_pixels_reaching_clip_span_the_normalised_range(clip224):
    model, processor = clip224
    pixels = captured_pixels(model, processor, [random_image(0, 300)])
    assert pixels.shape == (1, 3, 224, 224)
    # A uniform-random image normalised with CLIP's mean/std spans about -1.8 .. 2.1 per channel
    # with std ~1.1; scaled twice it would sit in -1.8 .. -1.45 (issue 13).
    assert pixels.min() < -1.5 and pixels.max() > 1.5 and pixels.std() > 0.5


def test_pixels_match_clips_own_image_processor(clip224):
    """Same resize (shortest edge), centre crop, scaling and mean/std as CLIPImageProcessor
    applied to the uint8 image (PIL's bicubic vs torch's antialiased bicubic differ a little)."""
    model, processor = clip224
    image = smooth_image(1, 300).crop((0, 0, 300, 260))  # not square: exercises resize + crop
    ours = captured_pixels(model, processor, [image])
    reference = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    assert ours.shape == reference.shape
    assert (ours - reference).abs().mean() < 0.03


def test_uint8_and_unit_float_inputs_give_one_scaling(clip224):
    model, processor = clip224
    image = smooth_image(2, 224)
    as_uint8 = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    scores = [clip_iqa_scores([x], model, processor)[0] for x in (image, as_uint8, as_uint8.float() / 255)]
    assert scores[0] == pytest.approx(scores[1], abs=1e-6) and scores[0] == pytest.approx(scores[2], abs=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):  # 0..255 floats are refused, not rescaled twice
        clip_iqa_scores([as_uint8.float()], model, processor)


def test_score_moves_with_blur_and_noise(clip224):
    """With a fixed CLIP, degrading an image changes its score (it cannot if CLIP sees a blank)."""
    model, processor = clip224
    image = smooth_image(3, 224)
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(np.clip(np.asarray(image) + rng.normal(0, 60, (224, 224, 3)), 0, 255).astype(np.uint8))
    blurred = image.filter(ImageFilter.GaussianBlur(4))
    scores = clip_iqa_scores([image, blurred, noisy], model, processor)
    # Compare log-odds (100·Δcos): a random CLIP's scores sit near one value, and a few percent
    # of change is what it gives here (~0.04); a CLIP that sees a blank moves by ~0.0003.
    log_odds = np.log(scores / (1 - scores))
    assert abs(log_odds[0] - log_odds[1]) > 0.01 and abs(log_odds[0] - log_odds[2]) > 0.01


def test_smoke_standin_scores_in_unit_interval_and_batches_agree():
    model, processor = clip.load_clip("smoke")
    images = [smooth_image(i, 64) for i in range(5)]
    one_batch = clip_iqa_scores(images, model, processor, batch_size=8)
    small_batches = clip_iqa_scores(images, model, processor, batch_size=2)
    assert one_batch.shape == (5,) and np.all((one_batch >= 0) & (one_batch <= 1))
    np.testing.assert_allclose(one_batch, small_batches, atol=1e-5)


def test_score_is_the_softmax_of_scaled_cosines(clip224):
    """The definition, written out: softmax over ("Good photo.", "Bad photo.") of 100·cos."""
    model, processor = clip224
    image = smooth_image(4, 224)
    tokens = processor.tokenizer(["Good photo.", "Bad photo."], padding=True, return_tensors="pt")
    pixels = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        text = model.text_projection(model.text_model(**tokens).pooler_output)
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
    cos = torch.nn.functional.cosine_similarity(img, text)
    expected = torch.softmax(100 * cos, 0)[0]
    assert clip_iqa_scores([image], model, processor)[0] == pytest.approx(float(expected), abs=0.02)


def test_unknown_prompt_name_is_a_clear_error(clip224):
    model, processor = clip224
    with pytest.raises(ValueError, match="unknown prompt name 'qualty'.*quality"):
        clip_iqa_scores([random_image()], model, processor, prompts=["qualty"])


def test_prompt_pairs_match_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.multimodal.clip_iqa")
    from facerefine.metrics.clip_iqa import PROMPT_PAIRS

    assert PROMPT_PAIRS == dict(tm._PROMPTS)
