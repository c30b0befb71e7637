"""Stand-in banners come from the networks behind a report, not from the profile's name
(issue 13, item 6): every report renderer shows the same banner for the same networks."""

import yaml

from facerefine import banners, report
from facerefine.config import parse_params
from facerefine.train.selection import GridConfig, render_report

SWEEP = GridConfig(profile="paper", image_size=256, data_fraction=0.02, epochs=20, lambda_identity=0.0,
                   esa_placement="trunk", data_models="black-forest-labs/FLUX.1-schnell")
CELL = {"variant": "esa", "lambda_cyc": 2.0, "lr": 1e-4, "best_loss_G": 0.7, "ssim_cycle": 0.95,
        "cell": "esa-l2-lr0.0001"}


def params_with(profile: str, **models):
    raw = yaml.safe_load(open("params.yaml", encoding="utf-8"))
    raw["profile"] = profile
    raw["profiles"][profile]["models"].update(models)
    return parse_params(raw)


def test_a_renamed_profile_with_standins_gets_the_banner_everywhere(tmp_path):
    raw = yaml.safe_load(open("params.yaml", encoding="utf-8"))
    raw["profiles"]["my_smoke"] = raw["profiles"]["smoke"]  # stand-ins under another name
    raw["profile"] = "my_smoke"
    params = parse_params(raw)
    assert not params.is_smoke
    for stage, roles in banners.REPORT_NETWORKS.items():
        found = banners.standin_networks(params, roles)
        assert found and all(f.endswith("(smoke)") for f in found), stage
    banner = banners.standin_banner(banners.standin_networks(params, banners.REPORT_NETWORKS["report"]))
    page = report.render_pipeline_report(tmp_path, profile="my_smoke", standins=banners.standin_networks(params), prompts_metrics=None)
    assert banner in page
    cycle = render_report([CELL], {"esa": {**CELL, "all_failed": False}}, 0.9,
                          banners.standin_networks(params, banners.REPORT_NETWORKS["select_cyclegan"]), SWEEP)
    assert "> **Stand-in networks:** schnell (smoke), dev (smoke)" in cycle


def test_real_networks_get_no_banner_and_one_random_network_does(tmp_path):
    paper = params_with("paper")
    assert banners.standin_networks(paper) == [] and banners.standin_banner([]) == ""
    assert "Stand-in" not in report.render_pipeline_report(tmp_path, profile="paper", standins=[], prompts_metrics=None)
    assert "Stand-in" not in render_report([CELL], {"esa": {**CELL, "all_failed": False}}, 0.9, [], SWEEP)
    mixed = params_with("paper", dev="random")
    assert banners.standin_networks(mixed, banners.REPORT_NETWORKS["select_cyclegan"]) == ["dev (random)"]
    assert banners.standin_networks(mixed, banners.REPORT_NETWORKS["diversity"]) == []  # dev does not reach it


def test_review_banner_follows_the_networks_of_the_raw_params(tmp_path):
    from facerefine.review import workspace_uses_standins

    raw = yaml.safe_load(open("params.yaml", encoding="utf-8"))
    raw["profiles"]["renamed"] = raw["profiles"]["rehearsal"]  # random networks, another name
    for profile, expected in (("renamed", True), ("paper", False), ("smoke", True)):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "profile": profile}), encoding="utf-8")
        assert workspace_uses_standins(tmp_path) is expected, profile
    (tmp_path / "params.yaml").write_text("profile: smoke\n", encoding="utf-8")  # unvalidated: falls back to the name
    assert workspace_uses_standins(tmp_path)
