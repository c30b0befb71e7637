"""Latency benchmark (paper §5.3, Fig. 6): the timing harness with a fake clock, the derived
numbers, the params, the architecture-only configs against the published sizes, exact head
FLOPs, and a tiny end-to-end run of the stage. No assertion depends on wall-clock time."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from facerefine import bench, bench_arch
from facerefine.bench import (BenchParams, Timing, achieved_tflops, bench_params, check_mode,
                              compute_bound_images_per_second, derive, images_per_second, overhead, percentile,
                              saving, seconds_per_image, time_callable)
from facerefine.config import ParamsError, load_params, parse_params

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


def test_smoke_profile_defaults_and_overrides():
    bp = bench_params(smoke_params())
    assert bp == bench.SMOKE_DEFAULTS and bp.mode == "smoke" and bp.resolutions == (32, 64)
    bp = bench_params(smoke_params(), resolutions=[64], repeats=2, compile=None)  # None: not given
    assert bp.resolutions == (64,) and bp.repeats == 2 and bp.compile is False
    assert bench_params(smoke_params(), mode="weights").mode == "smoke"  # its "weights" are the stand-ins


def test_real_weight_profiles_default_to_the_paper_sizes():
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["profile"] = "paper"
    bp = bench_params(parse_params(raw))
    assert bp.mode == "weights" and bp.resolutions == (256, 512, 768, 1024) and bp.head_batch_sizes == (1, 8, 32)


def test_params_sections_flow_through_once_config_has_them():
    real = smoke_params()
    wired = SimpleNamespace(profile="smoke", bench={"compile": True, "channels_last": False},
                            scale=SimpleNamespace(models=real.scale.models,
                                                  bench={"resolutions": [48], "head_repeats": 7, "threads": None}))
    bp = bench_params(wired)
    assert (bp.compile, bp.channels_last, bp.resolutions, bp.head_repeats, bp.threads) == (True, False, (48,), 7, None)
    wired.scale.bench = {"resolution": [48]}
    with pytest.raises(ParamsError, match=r"profiles\.smoke\.bench: unknown key\(s\) resolution"):
        bench_params(wired)


@pytest.mark.parametrize("override, key", [
    ({"resolutions": [30]}, "--resolutions: must be a non-empty list of positive multiples of 16"),
    ({"repeats": 0}, "--repeats: must be >= 1"),
    ({"mode": "fast"}, "--mode: must be one of smoke, weights, arch"),
    ({"compile": True, "head_warmup": 0}, "--head-warmup: must be >= 1 with compile"),
])
def test_bad_settings_name_their_key(override, key):
    with pytest.raises(ParamsError, match=key.replace("(", r"\(")):
        bench_params(smoke_params(), **override)


def test_a_bad_params_value_names_its_yaml_key():
    real = smoke_params()
    wired = SimpleNamespace(profile="smoke", bench=real.bench,
                            scale=SimpleNamespace(models=real.scale.models, bench={"head_batch_sizes": [0]}))
    with pytest.raises(ParamsError, match=r"profiles\.smoke\.bench\.head_batch_sizes"):
        bench_params(wired)


def test_arch_mode_refuses_a_cpu_unless_forced():
    with pytest.raises(ParamsError, match="--force"):
        check_mode(BenchParams(mode="arch"), torch.device("cpu"))
    check_mode(BenchParams(mode="arch", force=True), torch.device("cpu"))
    check_mode(BenchParams(mode="smoke"), torch.device("cpu"))


# --------------------------------------------------------------- arch configs and FLOPs


@pytest.mark.parametrize("role", ["dev", "schnell"])
def test_arch_configs_have_the_published_parameter_counts(role):
    counts = bench_arch.parameter_counts(role)  # built on the meta device: nothing allocated
    for name, published in bench_arch.PUBLISHED_PARAMETERS.items():
        assert counts[name] == pytest.approx(published, rel=0.01), name
    # dev's guidance embedding is the only difference
    assert (counts["transformer"] > 11.9e9) == (role == "dev")


def test_arch_components_are_the_real_flux_classes_on_meta():
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    parts = bench_arch.build_components("dev", device="meta")
    assert isinstance(parts["transformer"], FluxTransformer2DModel) and isinstance(parts["vae"], AutoencoderKL)
    assert isinstance(parts["text_encoder"], CLIPTextModel) and isinstance(parts["text_encoder_2"], T5EncoderModel)
    t = parts["transformer"].config
    assert (t.num_layers, t.num_single_layers, t.num_attention_heads, t.attention_head_dim) == (19, 38, 24, 128)
    assert t.guidance_embeds and tuple(t.axes_dims_rope) == (16, 56, 56)
    assert parts["vae"].config.scaling_factor == 0.3611 and parts["vae"].config.shift_factor == 0.1159
    assert parts["text_encoder_2"].config.is_gated_act and parts["text_encoder_2"].config.d_ff == 10240
    assert all(p.device.type == "meta" for m in parts.values() for p in m.parameters())


TINY = bench_arch.ArchConfigs(
    transformer={**bench_arch.FLUX_TRANSFORMER, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
                 "num_attention_heads": 2, "joint_attention_dim": 32, "pooled_projection_dim": 32,
                 "axes_dims_rope": (4, 6, 6)},
    vae={**bench_arch.FLUX_VAE, "block_out_channels": (8, 8, 16, 16), "layers_per_block": 1, "norm_num_groups": 4},
    clip={**bench_arch.CLIP_L_TEXT, "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
          "num_hidden_layers": 2, "projection_dim": 32},
    t5={**bench_arch.T5_XXL_ENCODER, "d_model": 32, "d_kv": 8, "d_ff": 37, "num_layers": 2, "num_heads": 4},
)


def test_the_arch_build_path_makes_a_working_bf16_pipeline():
    """What --mode arch does on a GPU (build in place in bf16), with tiny configs on the CPU."""
    before = torch.get_default_dtype()
    pipe = bench_arch.build_pipeline("dev", device="cpu", dtype=torch.bfloat16, configs=TINY)
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
    """A project dir with params (dev at 2 steps, to stay fast) and two tiny heads: a U-Net
    that fits 32², and an ESA generator that needs >= 60 px, so its 32² cells are skipped."""
    from facerefine.heads import save_head
    from facerefine.models.cyclegan import ResnetGenerator
    from facerefine.models.resunet_cbam import ResUNetCBAM

    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["dev"]["steps"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    torch.manual_seed(0)
    save_head(tmp_path / "models/heads/unet", ResUNetCBAM(base_channels=4, depth=2), name="unet")
    save_head(tmp_path / "models/heads/esa", ResnetGenerator(ngf=4, n_blocks=1, esa="blocks"), name="esa")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_stage():
    spec = importlib.util.spec_from_file_location("benchmark_stage", REPO / "stages" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_stage_writes_metrics_figure_and_report(project):
    threads = torch.get_num_threads()
    load_stage().main({"resolutions": [32], "head_batch_sizes": [1, 2], "warmup": 0, "repeats": 1,
                       "head_warmup": 0, "head_repeats": 1})
    assert torch.get_num_threads() == threads  # the smoke profile's 1 thread is not left behind

    result = json.loads((project / "metrics/latency.json").read_text(encoding="utf-8"))
    assert set(result) == {"mode", "profile", "meaningful", "environment", "settings", "text_encoding",
                           "pipelines", "schnell_plus_head", "heads", "derived", "paper", "seconds_total"}
    assert result["mode"] == "smoke" and result["meaningful"] is False
    assert {"device", "device_name", "pipeline_dtype", "torch", "diffusers", "threads", "mode"} <= set(result["environment"])
    for role, steps in (("dev", 2), ("schnell", 4)):
        rec = result["pipelines"][role]["32"]
        assert rec["steps"] == steps and rec["timing"]["repeats"] == 1 and rec["timing"]["warmup_s"] == []
        assert rec["images_per_second"] == pytest.approx(1 / rec["seconds_per_image"], rel=1e-3)
        assert result["text_encoding"][role]["seconds_per_call"] > 0
    assert set(result["schnell_plus_head"]) == {"unet", "esa"}  # the reference is timed alone only
    assert "seconds_per_image" in result["schnell_plus_head"]["unet"]["32"]
    assert "at least 60" in result["schnell_plus_head"]["esa"]["32"]["skipped"]
    assert set(result["heads"]) == {"unet", "esa", "reference"}
    ref = result["heads"]["reference"]["resolutions"]["32"]
    assert ref["gflop_per_image"] == pytest.approx(396.4 / 256, rel=0.01)
    assert set(ref["batches"]) == {"1", "2"} and ref["batches"]["2"]["images_per_call"] == 2
    unet = result["derived"]["32"]["heads"]["unet"]
    assert unet["saving_vs_dev"] is not None and result["derived"]["32"]["heads"]["esa"]["saving_vs_dev"] is None

    assert (project / "reports/latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (project / "reports/latency.md").read_text(encoding="utf-8")
    assert bench.SMOKE_BANNER in report and "(latency.png)" in report
    assert "| schnell + unet |" in report and "11.2" in report and "82%" in report


def test_cli_refuses_arch_mode_on_a_cpu(tmp_path):
    from click.testing import CliRunner

    from facerefine.cli import main

    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", "--mode", "arch", "--device", "cpu", "--out", str(out)])
    assert result.exit_code != 0 and "--force" in result.output and not out.exists()
    result = CliRunner().invoke(main, ["bench", "--resolutions", "30", "--out", str(out)])
    assert result.exit_code != 0 and "--resolutions" in result.output
