"""benchmarks/stage_throughput.py: its file feeds every stage of `facerefine cost` from a
measurement (issue #19 items 4 and 5), and cost reads per-variant and embedded-table figures."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from facerefine import cost
from facerefine.cli import main
from facerefine.config import parse_params

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "stage_throughput.py"


def load_script():
    spec = importlib.util.spec_from_file_location("stage_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_raw():
    """The repo's params, smoke profile cut to the smallest sizes the code accepts; the paper
    profile's benchmark at the same single resolution, so the embedded table covers it."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["profile"] = "smoke"
    raw["dev"]["steps"] = 2
    raw["bench"]["dev_steps"], raw["bench"]["headline_dev_steps"] = [2], 2
    raw["diversity"]["batch_size"] = raw["evaluate"]["batch_size"] = 2
    s = raw["profiles"]["smoke"]
    s.update(image_size=64, batch_size=2)  # the ESA head needs >= 60 px
    s["unet"].update(depth=2, image_size=32, batch_size=2)
    s["cyclegan"].update(n_blocks=1, image_size=64, batch_size=1)
    s["bench"].update(resolutions=[64], head_batch_sizes=[1], warmup=0, repeats=1, head_warmup=0,
                      head_repeats=1)
    raw["profiles"]["paper"]["bench"]["resolutions"] = [64]
    return raw


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One tiny run of the whole script (every part), written where --out says."""
    out = tmp_path_factory.mktemp("stage_throughput") / "st.json"
    params_file = out.with_name("params.yaml")
    params_file.write_text(yaml.safe_dump(tiny_raw()), encoding="utf-8")
    result = load_script().main(["--device", "cpu", "--warmup", "0", "--repeats", "1",
                                 "--params", str(params_file), "--out", str(out)])
    return out, params_file, result


@pytest.mark.slow
def test_the_file_records_every_figure_and_its_environment(measured):
    out, _, result = measured
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(result))
    assert set(data["throughputs"]) == {
        "unet_train_s_per_image", "cyclegan_train_s_per_image.cyclegan", "cyclegan_train_s_per_image.esa",
        "diversity_s_per_image", "eval_s_per_image", "schnell_s_per_image", "dev_s_per_image",
        "head_s_per_image.unet", "head_s_per_image.cyclegan", "head_s_per_image.esa"}
    assert all(v > 0 for v in data["throughputs"].values())
    env = data["environment"]
    assert env["device"] == "cpu" and env["profile"] == "smoke" and env["torch"]
    assert env["sizes"]["unet"] == {"image_size": 32, "batch_size": 2} and "mode" in env["numerics"]
    m = data["measurements"]
    # the stages' own batch sizes, not batch 1
    assert m["generation"]["schnell"]["batch"] == 2 and m["generation"]["dev"]["images_per_call"] == 2
    assert m["train_cyclegan"]["esa"]["batch"] == 1 and m["evaluate"]["features"]["batch"] == 2
    rec = m["train_unet"]
    assert rec["seconds_per_image"] == pytest.approx(rec["timing"]["median_s"] / 2, abs=1e-6)  # timings: 6 digits
    assert "CPU" in data["gpu"] and "mean nothing for a GPU" in data["note"]
    assert data["latency_table"]["pipelines"]["schnell"]["64"]["seconds_per_image"] > 0


@pytest.mark.slow
def test_cost_reads_it_with_no_unknown_stage_every_stage_measured(measured):
    out, params_file, _ = measured
    params = parse_params(yaml.safe_load(params_file.read_text(encoding="utf-8")))
    figures, table = cost.load_figures(out, params, "paper")
    stages = cost.project(params, "paper", figures, table)
    assert all(s.complete for s in stages), [s.missing for s in stages if not s.complete]
    for s in stages:
        for part in s.parts:  # every figure comes from the measured file, none given by hand
            assert part.value.source.startswith(out.as_posix()), (s.stage, part.figure, part.value.source)
    text = CliRunner().invoke(main, ["cost", "--profile", "paper", "--params", str(params_file),
                                     "--from", str(out)])
    assert text.exit_code == 0, text.output
    assert "unknown" not in text.output and "total of known" not in text.output


def test_cyclegan_variants_are_priced_apart_and_a_generic_figure_replaces_them():
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params = parse_params(raw)
    n = cost.counts(params, params.profiles["paper"])
    per_variant = n.cells // 2
    data = {"throughputs": {"cyclegan_train_s_per_image.cyclegan": 0.1, "cyclegan_train_s_per_image.esa": 0.3}}
    figs = cost.figures_from_json(data, "st.json", params, "paper")
    stage = {s.stage: s for s in cost.project(params, "paper", figs)}["train_cyclegan"]
    images = (n.cyclegan_train + n.cyclegan_val) * n.cyclegan_epochs * per_variant
    assert stage.known_hours == pytest.approx(images * (0.1 + 0.3) / 3600)
    given = cost.Figure(0.2, "--cyclegan-train-s-per-image")
    generic = figs.merged(cost.Figures({"cyclegan_train_s_per_image": given}))
    stage = {s.stage: s for s in cost.project(params, "paper", generic)}["train_cyclegan"]
    assert stage.known_hours == pytest.approx(images * 2 * 0.2 / 3600)
    with pytest.raises(cost.CostError, match="cyclegan_train_s_per_image.lora"):
        cost.figures_from_json({"throughputs": {"cyclegan_train_s_per_image.lora": 1}}, "st.json", params, "paper")


def test_an_embedded_latency_table_prices_the_benchmark_and_measured_figures_win(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["profiles"]["paper"]["bench"]["resolutions"] = [512]
    params = parse_params(raw)
    rec = lambda s: {"seconds_per_image": s}  # noqa: E731
    table = {"environment": {"device": "cuda", "device_name": "H100"}, "mode": "arch",
             "pipelines": {"dev_50steps": {"512": {**rec(20.0), "steps": 50}},
                           "dev_28steps": {"512": {**rec(12.0), "steps": 28}}, "schnell": {"512": rec(2.0)}},
             "schnell_plus_head": {h: {"512": rec(2.1)} for h in cost.HEADS}}
    path = tmp_path / "st.json"
    path.write_text(json.dumps({"gpu": "H100", "throughputs": {"schnell_s_per_image": 0.5},
                                "sources": {"schnell_s_per_image": "paper profile, 512², batch 8"},
                                "latency_table": table}), encoding="utf-8")
    figures, loaded = cost.load_figures(path, params, "paper")
    assert figures.get("schnell_s_per_image").seconds == 0.5  # the stage's batch, not the table's batch 1
    assert "batch 8" in figures.get("schnell_s_per_image").source
    assert figures.get("dev_s_per_image") is not None  # from the embedded table where not measured
    bench = {s.stage: s for s in cost.project(params, "paper", figures, loaded)}["benchmark"]
    assert bench.complete and "latency_table" in bench.parts[0].value.source


def test_latency_settings_parse_as_facerefine_bench_takes_them():
    script = load_script()
    assert script.latency_setting("resolutions=256,512") == ("resolutions", [256, 512])
    assert script.latency_setting("head_batch_sizes=1") == ("head_batch_sizes", [1])
    assert script.latency_setting("repeats=1") == ("repeats", 1)
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        script.latency_setting("repeats")
    with pytest.raises(SystemExit, match="unknown part"):
        script.measure(parse_params(tiny_raw()), device=None, skip=["nope"])
