"""Latency benchmark (paper §5.3, Fig. 6): the timing harness with a fake clock, the derived
numbers, the params, the architecture-only configs against the published sizes, exact head
FLOPs, and a tiny end-to-end run of the stage. No assertion depends on wall-clock time."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from facerefine import bench
from facerefine.bench import (RunOptions, Timing, achieved_tflops, check_mode, compute_bound_images_per_second,
                              derive, derive_all, dev_key, effective_mode, images_per_second, latency_headline, overhead,
                              percentile, saving, seconds_per_image, time_callable, with_overrides)
from facerefine.config import ParamsError, load_params, parse_params
from facerefine.summary import latency_numbers
from facerefine.weights import flux

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ harness, fake clock


class FakeClock:
    """A clock that only moves when the fake workload says so; logs every read."""

    def __init__(self, events: list[str]) -> None:
        self.now = 0.0
        self.events = events

    def __call__(self) -> float:
        self.events.append("clock")
        return self.now


def fake_workload(clock: FakeClock, durations: list[float], device_tail: float = 0.0):
    """fn advances the clock by the next duration; sync by ``device_tail`` (work still queued)."""
    it = iter(durations)

    def fn():
        clock.events.append("fn")
        clock.now += next(it)

    def sync():
        clock.events.append("sync")
        clock.now += device_tail

    return fn, sync


def test_warmup_calls_are_excluded_and_the_median_is_over_exactly_repeats_samples():
    events: list[str] = []
    clock = FakeClock(events)
    fn, sync = fake_workload(clock, [100.0, 50.0, 3.0, 1.0, 2.0, 5.0, 4.0])
    timing = time_callable(fn, warmup=2, repeats=5, sync=sync, clock=clock)
    assert timing.warmup == (100.0, 50.0)
    assert timing.samples == (3.0, 1.0, 2.0, 5.0, 4.0) and timing.repeats == 5
    assert timing.median == 3.0 and timing.min == 1.0 and timing.max == 5.0 and timing.mean == 3.0
    assert timing.p10 == pytest.approx(1.4) and timing.p90 == pytest.approx(4.6)
    assert events.count("fn") == 7  # nothing is called more often than asked


def test_median_of_an_even_number_of_repeats_averages_the_middle_two():
    clock = FakeClock([])
    fn, _ = fake_workload(clock, [9.0, 4.0, 1.0, 2.0, 8.0])
    timing = time_callable(fn, warmup=1, repeats=4, clock=clock)
    assert timing.samples == (4.0, 1.0, 2.0, 8.0) and timing.median == 3.0


def test_sync_runs_once_per_call_and_only_right_before_the_clock_stops():
    events: list[str] = []
    clock = FakeClock(events)
    # The device finishes 0.5 s after fn returns: only a sync before the stop read sees it.
    fn, sync = fake_workload(clock, [1.0, 2.0, 3.0], device_tail=0.5)
    timing = time_callable(fn, warmup=1, repeats=2, sync=sync, clock=clock)
    assert events == ["clock", "fn", "sync", "clock"] * 3
    assert events.count("sync") == 1 + 2  # the warm-up's is there so its kernels don't leak into repeat 1
    assert timing.samples == (2.5, 3.5) and timing.warmup == (1.5,)


def test_without_sync_the_loop_is_just_two_clock_reads_around_each_call():
    events: list[str] = []
    clock = FakeClock(events)
    fn, _ = fake_workload(clock, [1.0, 1.0])
    time_callable(fn, warmup=0, repeats=2, clock=clock)
    assert events == ["clock", "fn", "clock"] * 2


def test_harness_rejects_no_repeats_and_negative_warmup():
    with pytest.raises(ValueError, match="repeats"):
        time_callable(lambda: None, warmup=0, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        time_callable(lambda: None, warmup=-1, repeats=1)
    with pytest.raises(ValueError):
        Timing(samples=())


def test_timing_dict_has_stable_keys():
    d = Timing(samples=(0.2, 0.1, 0.3), warmup=(1.0,)).to_dict()
    assert set(d) == {"median_s", "p10_s", "p90_s", "min_s", "max_s", "mean_s", "repeats", "samples_s", "warmup_s"}
    assert d["median_s"] == 0.2 and d["samples_s"] == [0.2, 0.1, 0.3] and d["warmup_s"] == [1.0]


def test_percentile_interpolates_like_numpy():
    xs = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(xs, 0) == 1.0 and percentile(xs, 100) == 5.0 and percentile(xs, 50) == 3.0
    assert percentile(xs, 10) == pytest.approx(1.4) and percentile([7.0], 90) == 7.0


# ---------------------------------------------------------------------- derived numbers


def test_saving_and_overhead_arithmetic():
    dev, schnell, head = 10.0, 1.0, 0.1
    assert saving(schnell + head, dev) == pytest.approx(0.89)
    assert saving(schnell, dev) == pytest.approx(0.9)
    assert overhead(schnell + head, schnell) == pytest.approx(0.1)
    assert saving(dev, dev) == 0.0 and overhead(schnell, schnell) == 0.0
    with pytest.raises(ValueError):
        saving(1.0, 0.0)


def test_images_per_second_from_batch_timings():
    assert images_per_second(0.5, 8) == 16.0
    assert seconds_per_image(0.5, 8) == 0.0625
    assert images_per_second(2.0) == 0.5
    # the paper: 11.2 images/s is 89 ms per image
    assert seconds_per_image(1 / 11.2) == pytest.approx(0.0893, abs=1e-4)


def test_compute_bound_and_achieved_tflops():
    # plain ResNet generator, 396 GFLOP per 512² image, on an A100's 312 bf16 TFLOP/s
    assert compute_bound_images_per_second(396.0, 312.0) == pytest.approx(787.9, abs=0.1)
    assert achieved_tflops(396.0, 11.2) == pytest.approx(4.4352)


def test_derive_builds_the_saving_table_and_leaves_gaps_for_skipped_sizes():
    out = derive({"dev": {512: 10.0, 1024: 40.0}, "schnell": {512: 1.0, 1024: 4.0}},
                 {"esa": {512: 1.1, 1024: None}}, {"esa": {512: 0.1, 1024: None}}, [512, 1024])
    cell = out["512"]["heads"]["esa"]
    assert cell["saving_vs_dev"] == pytest.approx(0.89)
    assert cell["overhead_vs_schnell"] == pytest.approx(0.1)
    assert cell["head_alone_over_schnell"] == pytest.approx(0.1)
    assert out["512"]["schnell_saving_vs_dev"] == pytest.approx(0.9) and out["512"]["dev_over_schnell"] == 10.0
    assert out["1024"]["heads"]["esa"] == {"saving_vs_dev": None, "overhead_vs_schnell": None,
                                           "head_alone_over_schnell": None}
    assert out["mean"]["schnell_saving_vs_dev"] == pytest.approx(0.9)
    assert out["mean"]["heads"]["esa"]["saving_vs_dev"] == pytest.approx(0.89)  # over measured sizes only
    assert out["mean"]["resolutions"] == [512]


def test_mean_savings_cover_the_same_resolutions_for_every_head():
    """A head skipped at one size must not average over fewer sizes than the others: the means
    are compared side by side (summary, model cards, dvc exp show)."""
    out = derive({"dev": {32: 10.0, 64: 40.0}, "schnell": {32: 1.0, 64: 2.0}},
                 {"unet": {32: 2.0, 64: 4.0}, "esa": {32: None, 64: 8.0}},
                 {"unet": {32: 1.0, 64: 2.0}, "esa": {32: None, 64: 6.0}}, [32, 64])
    assert out["mean"]["resolutions"] == [64]
    assert out["mean"]["heads"]["unet"]["saving_vs_dev"] == pytest.approx(1 - 4 / 40)  # 64² only
    assert out["mean"]["heads"]["esa"]["saving_vs_dev"] == pytest.approx(1 - 8 / 40)
    assert out["mean"]["schnell_saving_vs_dev"] == pytest.approx(1 - 2 / 40)


def synthetic_result(sizes=(256, 512, 768, 1024), heads=("unet", "cyclegan", "esa"), dev_steps=(50, 28),
                     headline_steps=50):
    """A benchmark result with round numbers: dev 1 s per step, schnell 2 s, each head 0.5 s
    end to end on top of schnell, at every size (constant, so means are easy to check)."""
    rec = lambda s: {"seconds_per_image": s, "images_per_second": 1 / s}  # noqa: E731
    result = {"mode": "arch", "profile": "paper", "meaningful": True, "headline_dev_steps": headline_steps,
              "environment": {"flux_compile": "blocks", "head_compile": True},
              "settings": {"resolutions": list(sizes), "dev": {"steps": list(dev_steps)}},
              "pipelines": {**{dev_key(n): {str(r): rec(float(n)) for r in sizes} for n in dev_steps},
                            "schnell": {str(r): rec(2.0) for r in sizes}},
              "schnell_plus_head": {h: {str(r): rec(2.5) for r in sizes} for h in heads},
              "heads": {h: {"resolutions": {str(r): {"batches": {"1": {"images_per_second": 100.0},
                                                                 "8": {"images_per_second": 400.0}}}
                                            for r in sizes}} for h in heads}}
    result["derived"] = derive_all(result)
    return result


def leaves(node) -> int:
    return sum(leaves(v) for v in node.values()) if isinstance(node, dict) else 1


def test_derive_all_computes_the_saving_against_each_dev_step_count():
    result = synthetic_result()
    assert set(result["derived"]) == {"50", "28"}
    assert result["derived"]["50"]["512"]["heads"]["esa"]["saving_vs_dev"] == pytest.approx(1 - 2.5 / 50)  # 0.95
    assert result["derived"]["28"]["512"]["heads"]["esa"]["saving_vs_dev"] == pytest.approx(1 - 2.5 / 28)
    assert result["derived"]["28"]["mean"]["schnell_saving_vs_dev"] == pytest.approx(1 - 2 / 28)


def test_headline_is_the_saving_averaged_over_resolutions_with_each_beside_it():
    result = synthetic_result(sizes=(256, 512))
    # 256²: dev 40 s; 512²: dev 80 s (the headline's 50 steps); schnell + unet 2.5 s at both.
    result["pipelines"]["dev_50steps"] = {"256": {"seconds_per_image": 40.0}, "512": {"seconds_per_image": 80.0}}
    result["derived"] = derive_all(result)
    h = latency_headline(result)
    assert h["dev_steps"] == 50
    assert h["saving_vs_dev"]["256"]["unet"] == pytest.approx(1 - 2.5 / 40)   # 0.9375
    assert h["saving_vs_dev"]["512"]["unet"] == pytest.approx(1 - 2.5 / 80)   # 0.96875
    assert h["saving_vs_dev"]["mean"]["unet"] == pytest.approx((0.9375 + 0.96875) / 2)
    assert h["saving_vs_dev"]["mean"]["schnell"] == pytest.approx((0.95 + 0.975) / 2)
    assert h["head_images_per_second"] == {"resolution": 512, "unet": 400.0, "cyclegan": 400.0, "esa": 400.0}


def test_headline_head_throughput_is_at_the_papers_512_not_the_largest_size():
    result = synthetic_result(sizes=(256, 512, 1024))
    result["heads"]["esa"]["resolutions"]["1024"]["batches"]["8"]["images_per_second"] = 50.0
    result["heads"]["esa"]["resolutions"]["512"]["batches"]["8"]["images_per_second"] = 900.0
    h = latency_headline(result)
    assert h["head_images_per_second"]["resolution"] == 512 and h["head_images_per_second"]["esa"] == 900.0
    assert h["compiled"] == {"flux": "blocks", "heads": True}
    small = synthetic_result(sizes=(32, 64))  # without 512², the largest timed size
    assert latency_headline(small)["head_images_per_second"]["resolution"] == 64


def test_side_by_side_keeps_what_runs_as_the_record_and_eager_beside_it():
    from facerefine.bench.workloads import side_by_side

    compiled = {"seconds_per_image": 0.5, "compile_seconds": 12.0}
    eager = {"seconds_per_image": 1.5}
    rec = side_by_side(compiled, eager, "blocks")
    assert rec["seconds_per_image"] == 0.5 and rec["variant"] == "blocks"  # derive() reads what runs
    assert rec["eager"] == eager and rec["speedup_vs_eager"] == pytest.approx(3.0)
    assert side_by_side(eager, None, "eager") == {**eager, "variant": "eager"}
    assert side_by_side({"skipped": "out of memory"}, eager, "compiled")["speedup_vs_eager"] is None


def test_headline_names_the_dev_steps_it_uses():
    h = latency_headline(synthetic_result(headline_steps=28))
    assert h["dev_steps"] == 28 and h["saving_vs_dev"]["mean"]["esa"] == pytest.approx(1 - 2.5 / 28)


def test_headline_stays_small_at_the_paper_profiles_size():
    """Four resolutions and three heads: the metric is at most 25 numbers (the table is a report)."""
    h = latency_headline(synthetic_result())
    assert leaves(h) <= 25
    assert "pipelines" not in h and "derived" not in h


def test_a_skipped_size_is_null_in_the_headline_and_left_out_of_the_mean():
    result = synthetic_result(sizes=(32, 64), heads=("esa",))
    result["schnell_plus_head"]["esa"]["32"] = {"skipped": "ESA needs at least 60 px"}
    result["heads"]["esa"]["resolutions"]["32"] = {"skipped": "ESA needs at least 60 px"}
    result["derived"] = derive_all(result)
    h = latency_headline(result)
    assert h["saving_vs_dev"]["32"]["esa"] is None
    assert h["saving_vs_dev"]["mean"]["esa"] == h["saving_vs_dev"]["64"]["esa"] == pytest.approx(0.95)


def test_the_rendered_report_shows_both_dev_step_counts_and_the_headline_first():
    result = synthetic_result(sizes=(512,))
    result.update(environment={"device": "cuda", "device_name": "NVIDIA H100", "pipeline_dtype": "bfloat16",
                               "head_precision": "bfloat16 weights", "head_channels_last": True, "head_compile": True,
                               "flux_compile": "blocks", "threads": 1, "peak_bf16_tflops": None}, text_encoding={})
    result["settings"].update(repeats=3, warmup=1, head_repeats=20, head_warmup=3, head_batch_sizes=[1, 8])
    result["settings"]["dev"].update(guidance=3.0, refine_steps=50, refine_strength=0.7, refine_denoised=35)
    result["settings"]["schnell"] = {"steps": 4, "max_sequence_length": 256}
    for h in result["heads"].values():
        h.update(parameters=1, source="test")
        for cell in h["resolutions"].values():
            cell.update(gflop_per_image=1.0, compute_bound_images_per_second=None)
            for b in cell["batches"].values():
                b.update(seconds_per_call=0.01, achieved_tflops=0.1, fraction_of_peak=None)
    # what runs (compiled) beside the same work eager, as the benchmark records it
    result["pipelines"]["schnell"]["512"] = bench.workloads.side_by_side(
        {"seconds_per_image": 2.0, "images_per_second": 0.5, "compile_seconds": 14.0},
        {"seconds_per_image": 3.0}, "blocks")
    compiled_esa = {"seconds_per_call": 0.02, "seconds_per_image": 0.0025, "images_per_second": 400.0,
                    "achieved_tflops": 0.4, "fraction_of_peak": None, "compile_seconds": 30.0}
    result["heads"]["esa"]["resolutions"]["512"]["batches"]["8"] = bench.workloads.side_by_side(
        compiled_esa, {"seconds_per_image": 0.01}, "compiled")
    result["paper"] = bench.derived.paper_reference(result)
    md = bench.render_markdown(result)
    assert "| FLUX schnell text-to-image (blocks) | 512² | 1 | 3.00 s | 2.00 s | 1.50× | 14.00 s |" in md
    assert "| esa alone (compiled) | 512² | 8 | 10.0 ms | 2.5 ms | 4.00× | 30.00 s |" in md
    assert md.index("## Saving vs dev at 50 steps (the headline)") < md.index("## Saving vs dev at 28 steps")
    assert "| FLUX.1-dev text-to-image (50 steps" in md and "| FLUX.1-dev text-to-image (28 steps" in md
    # img2img at strength 0.7 skips the first 15 of the 50 steps (issue 21)
    assert "at strength 0.7 (`dev.strength`), denoises 35 of them" in md

    assert "| schnell + esa: saving vs dev | 95.0% | **95.0%** |" in md
    assert "28 is diffusers' default" in md
    text = bench.summary_text(result)
    assert "FLUX.1-dev, 28 steps" in text and "mean" in text


def test_peak_lookup_prefers_the_specific_name():
    assert bench.peak_tflops_for("NVIDIA H100 PCIe") == 756.0
    assert bench.peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.0
    assert bench.peak_tflops_for("NVIDIA A100-SXM4-40GB") == 312.0
    assert bench.peak_tflops_for("AMD EPYC") is None


def test_peak_memory_on_cpu_reads_a_plausible_process_peak():
    probe = bench.PeakMemory(torch.device("cpu"))
    probe.reset()
    peak = probe.read()
    assert peak is not None and peak > 10 * 2**20 and "RSS" in probe.kind


# ------------------------------------------------------------------------------ params


def smoke_params():
    return load_params(REPO / "params.yaml")


def paper_params():
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["profile"] = "paper"
    return parse_params(raw)


def test_settings_are_the_validated_params_with_overrides_applied():
    params = smoke_params()
    assert with_overrides(params) is params  # nothing given: nothing re-validated or copied
    over = with_overrides(params, resolutions=[64], repeats=2, compile=None, dev_steps=[50, 4])  # None: not given
    assert over.scale.bench.resolutions == [64] and over.scale.bench.repeats == 2
    assert over.bench.dev_steps == [50, 4] and over.bench.compile is params.bench.compile
    assert params.scale.bench.resolutions == [32, 64]  # the original is untouched
    assert over.profiles["paper"] == params.profiles["paper"]  # only the active profile


def test_the_profile_decides_the_mode_and_stand_ins_turn_weights_into_smoke():
    assert effective_mode(smoke_params()) == "smoke"
    assert effective_mode(with_overrides(smoke_params(), mode="weights")) == "smoke"  # its "weights" are stand-ins
    assert effective_mode(with_overrides(smoke_params(), mode="arch")) == "arch"
    paper = paper_params()
    assert effective_mode(paper) == "weights" and paper.scale.bench.resolutions == [256, 512, 768, 1024]


@pytest.mark.parametrize("override, key", [
    ({"resolutions": [30]}, "--resolutions: resolutions must be multiples of 16"),
    ({"repeats": 0}, "--repeats: Input should be greater than 0"),
    ({"mode": "fast"}, "--mode: Input should be 'smoke', 'weights' or 'arch'"),
    ({"dev_steps": [28]}, "--dev-steps: headline_dev_steps 50 must be one of dev_steps [28]"),
    ({"headline_dev_steps": 7}, "--headline-dev-steps: headline_dev_steps 7 must be one of dev_steps"),
])
def test_bad_settings_name_their_option(override, key):
    with pytest.raises(ParamsError, match=key.replace("[", r"\[").replace("(", r"\(")):
        with_overrides(smoke_params(), **override)


def test_unknown_settings_are_refused():
    with pytest.raises(ParamsError, match="unknown bench setting.*resolution\\b"):
        with_overrides(smoke_params(), resolution=[64])


def test_a_bad_params_value_names_its_yaml_key():
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["profiles"]["smoke"]["bench"]["head_batch_sizes"] = [0]
    with pytest.raises(ParamsError, match=r"profiles\.smoke\.bench\.head_batch_sizes"):
        parse_params(raw)
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["bench"]["headline_dev_steps"] = 28
    raw["bench"]["dev_steps"] = [50]
    with pytest.raises(ParamsError, match=r"bench: headline_dev_steps 28 must be one of dev_steps \[50\]"):
        parse_params(raw)


def test_run_options_refuse_a_non_positive_peak():
    with pytest.raises(ParamsError, match="--peak-tflops"):
        RunOptions(peak_tflops=0)


def test_arch_mode_refuses_a_cpu_unless_forced():
    with pytest.raises(ParamsError, match="--force"):
        check_mode("arch", torch.device("cpu"))
    check_mode("arch", torch.device("cpu"), force=True)
    check_mode("smoke", torch.device("cpu"))


# --------------------------------------------------------------- arch configs and FLOPs


@pytest.mark.parametrize("role", ["dev", "schnell"])
def test_arch_configs_have_the_published_parameter_counts(role):
    counts = flux.parameter_counts(role)  # built on the meta device: nothing allocated
    for name, published in flux.PUBLISHED_PARAMETERS.items():
        assert counts[name] == pytest.approx(published, rel=0.01), name
    # dev's guidance embedding is the only difference
    assert (counts["transformer"] > 11.9e9) == (role == "dev")


def test_arch_components_are_the_real_flux_classes_on_meta():
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    parts = flux.build_components("dev", device="meta")
    assert isinstance(parts["transformer"], FluxTransformer2DModel) and isinstance(parts["vae"], AutoencoderKL)
    assert isinstance(parts["text_encoder"], CLIPTextModel) and isinstance(parts["text_encoder_2"], T5EncoderModel)
    t = parts["transformer"].config
    assert (t.num_layers, t.num_single_layers, t.num_attention_heads, t.attention_head_dim) == (19, 38, 24, 128)
    assert t.guidance_embeds and tuple(t.axes_dims_rope) == (16, 56, 56)
    assert parts["vae"].config.scaling_factor == 0.3611 and parts["vae"].config.shift_factor == 0.1159
    assert parts["text_encoder_2"].config.is_gated_act and parts["text_encoder_2"].config.d_ff == 10240
    assert all(p.device.type == "meta" for m in parts.values() for p in m.parameters())


TINY = flux.ArchConfigs(
    transformer={**flux.FLUX_TRANSFORMER, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
                 "num_attention_heads": 2, "joint_attention_dim": 32, "pooled_projection_dim": 32,
                 "axes_dims_rope": (4, 6, 6)},
    vae={**flux.FLUX_VAE, "block_out_channels": (8, 8, 16, 16), "layers_per_block": 1, "norm_num_groups": 4},
    clip={**flux.CLIP_L_TEXT, "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
          "num_hidden_layers": 2, "projection_dim": 32},
    t5={**flux.T5_XXL_ENCODER, "d_model": 32, "d_kv": 8, "d_ff": 37, "num_layers": 2, "num_heads": 4},
)


def test_the_arch_build_path_makes_a_working_bf16_pipeline():
    """What --mode arch does on a GPU (build in place in bf16), with tiny configs on the CPU."""
    before = torch.get_default_dtype()
    pipe = flux.build_pipeline("dev", device="cpu", dtype=torch.bfloat16, configs=TINY)
    assert torch.get_default_dtype() == before
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.text_encoder_2.dtype == torch.bfloat16
    # buffers are real values, not uninitialised memory (CLIP indexes with them)
    buffers = dict(pipe.text_encoder.named_buffers())
    position_ids = next(v for k, v in buffers.items() if k.endswith("position_ids"))
    assert torch.equal(position_ids[0], torch.arange(77))
    image = pipe(prompt="a portrait", height=32, width=32, num_inference_steps=1, guidance_scale=3.0,
                 max_sequence_length=16, output_type="pt").images
    assert image.shape == (1, 3, 32, 32)


def test_reference_generator_flops_match_the_published_396_gflop_and_scale_with_pixels():
    from facerefine.models.cyclegan import ResnetGenerator

    ref = ResnetGenerator(**bench.REFERENCE_CONFIG)
    at_512 = bench.count_flops(ref, 512)
    assert at_512 == pytest.approx(396e9, rel=0.01)
    assert bench.count_flops(ref, 64) * 64 == at_512  # convs only: exactly proportional to pixels
    assert all(p.device.type == "cpu" for p in ref.parameters())  # counted on a meta copy


# ------------------------------------------------------------------ stage, end to end


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project dir whose params train tiny heads: a U-Net and a CycleGAN that fit 32², and an
    ESA generator that needs >= 60 px, so its 32² cells are skipped. No head is trained: the
    benchmark builds them from these params."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["profiles"]["smoke"]["unet"].update(base_channels=4, depth=2)
    raw["profiles"]["smoke"]["cyclegan"].update(ngf=4, n_blocks=1)
    raw["cyclegan"]["esa_placement"] = "blocks"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_benchmarked_heads_are_the_trained_architectures():
    """The benchmark times heads built from the params; they must be what the trainers build."""
    from facerefine.config import load_params
    from facerefine.models.factory import build_heads
    from facerefine.models.resunet_cbam import ResUNetCBAM
    from facerefine.train.cycle import CycleConfig

    params = load_params()
    built = build_heads(params)
    scale = params.scale
    assert built["unet"].config() == ResUNetCBAM(base_channels=scale.unet.base_channels,
                                                 depth=scale.unet.depth).config()
    for variant in ("cyclegan", "esa"):
        trained = CycleConfig(variant=variant, esa_placement=params.cyclegan.esa_placement, lambda_cyc=2.0,
                              lr=1e-4, ngf=scale.cyclegan.ngf, n_blocks=scale.cyclegan.n_blocks).generator()
        assert built[variant].config() == trained.config()
    assert built["esa"].config() != built["cyclegan"].config()
    assert not any(m.training for m in built.values())


def load_stage():
    spec = importlib.util.spec_from_file_location("benchmark_stage", REPO / "stages" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_stage_writes_metrics_figure_and_report(project):
    threads = torch.get_num_threads()
    load_stage().main({"resolutions": [32], "head_batch_sizes": [1, 2], "warmup": 0, "repeats": 1,
                       "head_warmup": 0, "head_repeats": 1, "dev_steps": [2, 3], "headline_dev_steps": 2})
    assert torch.get_num_threads() == threads  # the smoke profile's 1 thread is not left behind

    result = json.loads((project / "reports/latency.json").read_text(encoding="utf-8"))
    assert set(result) == {"mode", "profile", "meaningful", "headline_dev_steps", "environment", "settings",
                           "text_encoding", "pipelines", "schnell_plus_head", "heads", "derived", "paper",
                           "seconds_total"}
    assert result["mode"] == "smoke" and result["meaningful"] is False and result["headline_dev_steps"] == 2
    assert {"device", "device_name", "pipeline_dtype", "torch", "diffusers", "threads", "mode"} <= set(
        result["environment"])
    assert set(result["pipelines"]) == {"dev_2steps", "dev_3steps", "schnell"}  # dev at every bench.dev_steps
    for key, steps in (("dev_2steps", 2), ("dev_3steps", 3), ("schnell", 4)):
        rec = result["pipelines"][key]["32"]
        assert rec["steps"] == steps and rec["timing"]["repeats"] == 1 and rec["timing"]["warmup_s"] == []
        assert rec["images_per_second"] == pytest.approx(1 / rec["seconds_per_image"], rel=1e-3)
    assert result["text_encoding"]["dev"]["seconds_per_call"] > 0
    assert set(result["schnell_plus_head"]) == {"unet", "cyclegan", "esa"}  # the reference is timed alone only
    assert "seconds_per_image" in result["schnell_plus_head"]["unet"]["32"]
    assert "at least 60" in result["schnell_plus_head"]["esa"]["32"]["skipped"]
    assert set(result["heads"]) == {"unet", "cyclegan", "esa", "reference"}
    ref = result["heads"]["reference"]["resolutions"]["32"]
    assert ref["gflop_per_image"] == pytest.approx(396.4 / 256, rel=0.01)
    assert set(ref["batches"]) == {"1", "2"} and ref["batches"]["2"]["images_per_call"] == 2
    assert set(result["derived"]) == {"2", "3"}  # the saving against each dev step count
    for steps in ("2", "3"):
        unet = result["derived"][steps]["32"]["heads"]["unet"]
        esa = result["derived"][steps]["32"]["heads"]["esa"]
        assert unet["saving_vs_dev"] is not None and esa["saving_vs_dev"] is None

    # The metric is the headline only, read by summary.py as written.
    metric = json.loads((project / "metrics/latency.json").read_text(encoding="utf-8"))
    assert metric == latency_headline(result) and metric["dev_steps"] == 2
    assert metric["saving_vs_dev"]["mean"]["unet"] == result["derived"]["2"]["mean"]["heads"]["unet"]["saving_vs_dev"]
    assert latency_numbers(metric, ["unet", "esa"])["saving_vs_dev.unet"] == metric["saving_vs_dev"]["mean"]["unet"]

    assert (project / "reports/latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (project / "reports/latency.md").read_text(encoding="utf-8")
    assert bench.SMOKE_BANNER in report and "(latency.png)" in report
    assert "| schnell + unet |" in report and "11.2" in report and "82%" in report
    assert "## Saving vs dev at 2 steps (the headline)" in report and "## Saving vs dev at 3 steps" in report
    assert "| FLUX.1-dev text-to-image (3 steps, guidance 3) |" in report


def test_cli_refuses_arch_mode_on_a_cpu(tmp_path):
    from click.testing import CliRunner

    from facerefine.cli import main

    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", "--mode", "arch", "--device", "cpu", "--out", str(out)])
    assert result.exit_code != 0 and "--force" in result.output and not out.exists()
    result = CliRunner().invoke(main, ["bench", "--resolutions", "30", "--out", str(out)])
    assert result.exit_code != 0 and "--resolutions" in result.output


def test_a_step_cap_is_named_in_the_report():
    """The rehearsal caps FLUX at max_steps: a dev_50steps line that ran 1 step must say so."""
    from facerefine.bench.outputs import caveats

    result = {"mode": "weights", "environment": {"device": "cpu"}, "settings": {"max_steps": 1}}
    assert any("Steps capped at 1" in note for note in caveats(result))
    result["settings"]["max_steps"] = None
    assert not any("capped" in note for note in caveats(result))


def test_compiled_flux_and_heads_are_timed_beside_eager_in_one_run(project, monkeypatch):
    """profiles.<p>.compile: blocks and bench.compile: on, on the CPU with the tiny stand-ins: each
    compiled record is what the pipeline runs, with the eager one of the same work beside it and
    the compile apart from the steady state; the headline says what ran."""
    from facerefine.bench import workloads
    from facerefine.weights import flux

    raw = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    raw["profiles"]["smoke"]["compile"] = "blocks"
    (project / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    calls: list[str] = []  # the order of events: eager (E) and compiled (C) timings, FLUX compiles
    compile_flux, measure = flux.compile_flux, workloads.Bench.measure

    def spy_compile(pipe, how, **kw):
        calls.extend([f"compile {how}"] if how != "none" else [])  # loading calls it with none
        return compile_flux(pipe, how, **kw)

    def spy_measure(self, fn, **kw):
        calls.append("C" if kw.get("compiled") else "E")
        return measure(self, fn, **kw)

    monkeypatch.setattr(flux, "compile_flux", spy_compile)
    monkeypatch.setattr(workloads.Bench, "measure", spy_measure)
    torch._dynamo.reset()
    load_stage().main({"resolutions": [32], "head_batch_sizes": [1], "warmup": 0, "repeats": 1, "head_warmup": 0,
                       "head_repeats": 1, "dev_steps": [2], "headline_dev_steps": 2, "compile": "on"})
    result = json.loads((project / "reports/latency.json").read_text(encoding="utf-8"))
    assert result["environment"]["flux_compile"] == "blocks" and result["environment"]["head_compile"] is True
    compiled = [result["pipelines"]["dev_2steps"]["32"], result["pipelines"]["schnell"]["32"],
                *(result["heads"][h]["resolutions"]["32"]["batches"]["1"] for h in ("unet", "cyclegan", "reference"))]
    # each pipeline: text encoding and text-to-image eager, then compiled in place, then compiled
    # text-to-image and schnell + each head that fits 32² (unet, cyclegan); then each head alone
    # that fits (unet, cyclegan, reference) eager and compiled
    assert calls == ["E", "E", "compile blocks", "C",
                     "E", "E", "compile blocks", "C", "C", "C",
                     "E", "C", "E", "C", "E", "C"]
    for rec in compiled:
        assert rec["variant"] in ("blocks", "compiled") and "compile_seconds" not in rec["eager"]
        assert len(rec["timing"]["warmup_s"]) == 1 and len(rec["eager"]["timing"]["warmup_s"]) == 0
        assert rec["speedup_vs_eager"] == pytest.approx(
            rec["eager"]["seconds_per_image"] / rec["seconds_per_image"], rel=1e-3)
    dev = result["pipelines"]["dev_2steps"]["32"]  # the first compiled call of the run pays the compile
    assert dev["compile_seconds"] > dev["seconds_per_call"]
    assert "compile_seconds" in result["schnell_plus_head"]["unet"]["32"]
    # derive() reads what runs: the compiled schnell and dev
    schnell, dev = (result["pipelines"][k]["32"]["seconds_per_image"] for k in ("schnell", "dev_2steps"))
    assert result["derived"]["2"]["32"]["schnell_saving_vs_dev"] == pytest.approx(1 - schnell / dev, abs=1e-5)
    metric = json.loads((project / "metrics/latency.json").read_text(encoding="utf-8"))
    assert metric["compiled"] == {"flux": "blocks", "heads": True}
    report = (project / "reports/latency.md").read_text(encoding="utf-8")
    assert "## Compiled vs eager" in report and "| FLUX schnell text-to-image (blocks) | 32² | 1 |" in report
    assert "| cyclegan alone (compiled) | 32² | 1 |" in report
    torch._dynamo.reset()
