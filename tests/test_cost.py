"""`facerefine cost`: the arithmetic of the GPU-hours projection against hand-computed examples,
reading measured files, and unknown figures reported per stage rather than invented."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from facerefine import cost
from facerefine.cli import main
from facerefine.config import parse_params

REPO = Path(__file__).resolve().parents[1]


def small_paper_params(**bench):
    """The repo's params with a paper profile of round numbers (so the tests don't follow params.yaml)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["prompts"]["split"] = {"train": 0.8, "val": 0.1, "test": 0.1}
    raw["cyclegan"]["grid"] = {"variant": ["cyclegan", "esa"], "lambda_cyc": [2, 5, 10], "lr": [1e-4, 2e-4, 3e-4]}
    raw["dev"].update(steps=50, strength=0.7)
    raw["bench"].update(dev_steps=[50, 28], headline_dev_steps=50)
    p = raw["profiles"]["paper"]
    p.update(num_names=1000, num_baseline=100, image_size=512)
    p["unet"].update(data_fraction=0.1, max_epochs=10, image_size=512)
    p["cyclegan"].update(data_fraction=0.05, epochs=10, epochs_decay=10, image_size=256)
    p["bench"].update(resolutions=[256, 512], warmup=1, repeats=3, **bench)
    return parse_params(raw)


ALL = {"schnell_s_per_image": 4.0, "dev_s_per_image": 45.0, "head_s_per_image": 0.1, "unet_train_s_per_image": 0.5,
       "cyclegan_train_s_per_image": 0.25, "diversity_s_per_image": 0.2, "eval_s_per_image": 0.05}


def figures(values=ALL, gpu="NVIDIA H100"):
    return cost.Figures({k: cost.Figure(v, "test") for k, v in values.items()}, gpu)


def by_stage(stages):
    return {s.stage: s for s in stages}


def test_img2img_runs_strength_times_steps_as_diffusers_rounds_it():
    assert cost.img2img_steps(50, 0.7) == 35
    assert cost.img2img_steps(28, 0.7) == 20   # 28 - int(8.4)
    assert cost.img2img_steps(4, 1.0) == 4


def test_dev_img2img_time_from_two_step_counts_fits_a_fixed_part():
    # 60 s at 50 steps, 38 s at 28: 1 s/step + 10 s fixed; 35 img2img steps -> 45 s
    seconds, how = cost.dev_img2img_seconds({50: 60.0, 28: 38.0}, 50, 0.7)
    assert seconds == pytest.approx(45.0) and "35 img2img steps" in how and "fitted to 28 and 50" in how
    seconds, _ = cost.dev_img2img_seconds({50: 50.0}, 50, 0.7)  # one count: proportional
    assert seconds == pytest.approx(35.0)
    with pytest.raises(cost.CostError):
        cost.dev_img2img_seconds({}, 50, 0.7)


def test_counts_follow_the_profile():
    n = cost.counts(small_paper_params(), small_paper_params().profiles["paper"])
    assert (n.enriched, n.baseline, n.train, n.val, n.test) == (1000, 100, 800, 100, 100)
    # data_fraction of the whole dataset (1000), drawn from the train split; val in proportion
    assert (n.unet_train, n.unet_val, n.unet_epochs) == (100, 12, 10)
    assert (n.cyclegan_train, n.cyclegan_val, n.cyclegan_epochs, n.cells) == (50, 6, 20, 18)


def test_every_stage_hand_computed():
    params = small_paper_params()
    stages = by_stage(cost.project(params, "paper", figures()))
    hours = {name: s.known_hours for name, s in stages.items()}
    assert hours["generate_schnell"] == pytest.approx(1100 * 4.0 / 3600)
    assert hours["refine_dev"] == pytest.approx(1000 * 45.0 / 3600)
    assert hours["diversity"] == pytest.approx(1100 * 0.2 / 3600)
    assert hours["train_unet"] == pytest.approx((100 + 12) * 10 * 0.5 / 3600)
    assert hours["train_cyclegan"] == pytest.approx(18 * (50 + 6) * 20 * 0.25 / 3600)  # the whole grid
    assert hours["select_cyclegan"] == 0
    # LoRA images at schnell's rate, three heads, features of 6 sets (schnell, dev, LoRA, 3 heads)
    assert hours["evaluate"] == pytest.approx(100 * (4.0 + 3 * 0.1 + 6 * 0.05) / 3600)
    assert not stages["benchmark"].complete  # no latency table given
    total, unknown = cost.total_hours(stages.values())
    assert unknown == ["benchmark"]
    assert total == pytest.approx(sum(h for name, h in hours.items() if name != "benchmark"))


def test_an_unknown_figure_is_reported_per_stage_not_invented():
    values = {k: v for k, v in ALL.items() if k not in ("dev_s_per_image", "eval_s_per_image")}
    stages = by_stage(cost.project(small_paper_params(), "paper", figures(values)))
    assert stages["refine_dev"].missing == ["--dev-s-per-image"] and stages["refine_dev"].known_hours == 0
    assert stages["evaluate"].missing == ["--eval-s-per-image"]
    assert stages["evaluate"].known_hours == pytest.approx(100 * (4.0 + 3 * 0.1) / 3600)  # the known part
    _, unknown = cost.total_hours(stages.values())
    assert unknown == ["refine_dev", "benchmark", "evaluate"]
    text = cost.render_cost_report(list(stages.values()), figures(values), profile_name="paper", gpus=4,
                       params=small_paper_params())
    assert "needs --dev-s-per-image" in text and "without refine_dev, benchmark, evaluate" in text


def test_wall_clock_divides_by_the_gpus():
    assert cost.wall_hours(100.0, 8) == 12.5 and cost.wall_hours(3.0, 1) == 3.0
    with pytest.raises(cost.CostError, match="--gpus"):
        cost.wall_hours(1.0, 0)


def latency_table():
    """A `facerefine bench` full table at 256² and 512²: dev 1 s/step + 10 s, schnell 2 s, head + 0.5 s."""
    rec = lambda s, **kw: {"seconds_per_image": s, "images_per_second": 1 / s, **kw}  # noqa: E731
    return {
        "mode": "arch", "environment": {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"},
        "pipelines": {"dev_50steps": {"256": rec(30.0, steps=50), "512": rec(60.0, steps=50)},
                      "dev_28steps": {"256": rec(19.0, steps=28), "512": rec(38.0, steps=28)},
                      "schnell": {"256": rec(1.0, steps=4), "512": rec(2.0, steps=4)}},
        "schnell_plus_head": {h: {"256": rec(1.5), "512": rec(2.5)} for h in ("unet", "cyclegan", "esa")},
        "heads": {**{h: {"end_to_end": True, "resolutions": {"512": {"batches": {
                       "1": {"images_per_second": 100.0}, "8": {"images_per_second": 400.0}}}}}
                     for h in ("unet", "cyclegan", "esa")},
                  "reference": {"end_to_end": False, "resolutions": {"512": {"batches": {
                      "1": {"images_per_second": 999.0}}}}}},
    }


def test_figures_from_a_benchmark_table_at_the_profile_size():
    params = small_paper_params()
    found = cost.figures_from_json(latency_table(), "t.json", params, "paper")
    assert found.gpu == "NVIDIA H100 80GB HBM3"
    assert found.get("schnell_s_per_image").seconds == 2.0
    assert found.get("dev_s_per_image").seconds == pytest.approx(45.0)  # 10 + 35 x 1 (see above)
    assert found.head("esa").seconds == pytest.approx(1 / 400) and "batch 8" in found.head("esa").source
    assert "head_s_per_image.reference" not in found.values  # the yardstick is not a pipeline head
    assert found.get("unet_train_s_per_image") is None      # inference tables say nothing about training


def test_the_benchmark_stage_from_a_table_covering_its_resolutions():
    params = small_paper_params()
    stages = by_stage(cost.project(params, "paper", figures(), {**latency_table(), "_source": "t.json"}))
    bench = stages["benchmark"]
    assert bench.complete
    # 4 calls (1 warm-up + 3) at 256² and 512² of: dev 50 (30 + 60), dev 28 (19 + 38), schnell (1 + 2),
    # schnell + each of 3 heads (1.5 + 2.5)
    assert bench.known_hours == pytest.approx(4 * (90 + 57 + 3 + 3 * 4) / 3600)
    missing_512 = latency_table()
    del missing_512["pipelines"]["schnell"]["512"]
    assert not by_stage(cost.project(params, "paper", figures(), missing_512))["benchmark"].complete


def test_figures_from_heads_throughput_and_a_plain_throughputs_file():
    params = small_paper_params()
    heads = {"device": "NVIDIA H100", "device_type": "cuda", "dtype": "bfloat16", "results": [
        {"model": "esa-cyclegan (blocks)", "size": 512, "batch": 1, "images_per_s": 200.0},
        {"model": "esa-cyclegan (blocks)", "size": 512, "batch": 8, "images_per_s": 500.0},
        {"model": "esa-cyclegan (blocks)", "size": 256, "batch": 8, "images_per_s": 2000.0},  # other size
        {"model": "reference", "size": 512, "batch": 8, "images_per_s": 900.0}]}
    found = cost.figures_from_json(heads, "h.json", params, "paper")
    assert found.head("esa").seconds == pytest.approx(1 / 500) and set(found.values) == {"head_s_per_image.esa"}
    plain = cost.figures_from_json({"gpu": "L4", "throughputs": {"diversity_s_per_image": 0.3}}, "p.json",
                                   params, "paper")
    assert plain.gpu == "L4" and plain.get("diversity_s_per_image").seconds == 0.3
    with pytest.raises(cost.CostError, match="unknown figure.*schnell_img_per_s"):
        cost.figures_from_json({"throughputs": {"schnell_img_per_s": 1}}, "p.json", params, "paper")
    with pytest.raises(cost.CostError, match="positive"):
        cost.Figure(0.0, "--dev-s-per-image")


def test_cli_prints_the_table_totals_and_assumptions(tmp_path):
    table = tmp_path / "latency.json"
    table.write_text(json.dumps(latency_table()))
    result = CliRunner().invoke(main, ["cost", "--from", str(table), "--gpus", "4", "--schnell-s-per-image", "3",
                                       "--unet-train-s-per-image", "0.5"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Projected GPU time of profile 'paper' on NVIDIA H100 80GB HBM3" in out
    assert "wall h, 4 GPUs" in out and "1 GPU:" in out and "4 GPUs:" in out
    assert "schnell_s_per_image            3  from --schnell-s-per-image" in out  # the option beats the file
    assert "needs --cyclegan-train-s-per-image" in out and "Assumptions:" in out and "18 grid cells" in out
    bad = CliRunner().invoke(main, ["cost", "--profile", "nope"])
    assert bad.exit_code != 0 and "unknown profile 'nope'" in bad.output
