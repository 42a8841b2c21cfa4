"""The main job's closing report reads what the stages wrote and names what is missing."""

import json

from lit_app.experiments import demo_summary


def test_report_shows_victims_corpora_grid_and_missing_parts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs/kws-demo").mkdir(parents=True)
    (tmp_path / "runs/kws-demo/results.json").write_text(json.dumps({"metrics": {"test/acc": 0.9146}}))
    corpus = tmp_path / "data/adversarial/blackbox-demo"
    corpus.mkdir(parents=True)
    attack = {"examples": 270, "successful": 248, "success_rate": 0.9185, "mean_db_x_successful": -9.24,
              "mean_snr_db_successful": 12.34, "median_queries": 920.0, "median_iterations": 46.0}
    (corpus / "corpus.json").write_text(json.dumps({"complete": True, "summary": {"attack": attack}}))
    (tmp_path / "runs/detector-grid-demo").mkdir(parents=True)
    (tmp_path / "runs/detector-grid-demo/results.md").write_text("| train -> test | MFCC |\n")
    (tmp_path / "runs/noise-flooding-demo").mkdir(parents=True)
    (tmp_path / "runs/noise-flooding-demo/results.md").write_text("| train -> test | noise flooding 20 dB |\n")
    (tmp_path / "runs/demo-times.txt").write_text("2026-11-29T04:56:26Z kws-victim 832 s\n")

    demo_summary.main()
    text = (tmp_path / "runs/demo-summary.md").read_text()
    assert "test/acc = 0.9146" in text
    assert "runs/asr-demo/results.json is missing" in text
    assert "| blackbox-demo | 270 | 0.9185 | -9.24 | 12.34 | 920.0 | 46.0 |" in text
    assert "| whitebox-demo | not built |" in text
    assert "whitebox-more-demo" not in text  # a demo set of the repository that the main job does not build
    assert "| train -> test | MFCC |" in text and "adaptive.md is missing" in text
    assert "| train -> test | noise flooding 20 dB |" in text
    assert "kws-victim 832 s" in text


def test_victim_lines_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs/kws-demo").mkdir(parents=True)
    (tmp_path / "runs/kws-demo/results.json").write_text(json.dumps({"metrics": {"test/acc": 0.9146}}))
    demo_summary.main(["kws"])
    assert capsys.readouterr().out == "- KWS victim, on unseen voices: test/acc = 0.9146\n"
    assert not (tmp_path / "runs/demo-summary.md").exists()
