"""The main job's closing report reads what the stages wrote and names what is missing."""

import json

from tests.main_job import load_report

demo_summary = load_report()

ATTACK = {"examples": 270, "successful": 248, "success_rate": 0.9185, "mean_db_x_successful": -9.24,
          "mean_snr_db_successful": 12.34, "median_queries": 920.0, "median_iterations": 46.0}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_report_shows_victims_corpora_grid_and_missing_parts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "runs/kws-demo/results.json", json.dumps({"metrics": {"test/acc": 0.9146}}))
    write(tmp_path / "data/adversarial/blackbox-demo/corpus.json", json.dumps({"complete": True, "summary": {"attack": ATTACK}}))
    write(tmp_path / "runs/detector-grid-demo/results.md", "| train -> test | MFCC |\n")
    write(tmp_path / "runs/noise-flooding-demo/results.md", "| train -> test | noise flooding 20 dB |\n")
    write(tmp_path / "runs/demo-times.txt", "2026-11-29T04:56:26Z demo kws-victim 832 s\n")

    demo_summary.main([])  # the main job's default scale
    text = (tmp_path / "runs/demo-summary-demo.md").read_text()
    assert "test/acc = 0.9146" in text
    assert "runs/asr-demo/results.json is missing" in text
    assert "| blackbox-demo | 270 | 0.9185 | -9.24 | 12.34 | 920.0 | 46.0 |" in text
    assert "| whitebox-demo | not built |" in text
    assert "whitebox-more-demo" not in text  # a demo set of the repository that the main job does not build
    assert "| train -> test | MFCC |" in text and "adaptive.md is missing" in text
    assert "| train -> test | noise flooding 20 dB |" in text
    assert "kws-victim 832 s" in text
    assert "runs/detector-grid-demo/results.csv is missing" in text.split("## Victims")[0]


def test_stage_times_add_up_the_runs_of_a_resumed_job():
    log = ("2026-12-05T10:00:00Z demo kws-victim 832 s\n2026-12-05T10:20:00Z demo attack:blackbox 600 s\n"
           "2026-12-05T16:00:00Z demo kws-victim 3 s\n2026-12-05T16:30:00Z demo attack:blackbox 1200 s\n"
           "2026-12-05T17:00:00Z quick kws-victim 99 s\n")
    lines = demo_summary.stage_time_lines(log, "demo")
    assert "| kws-victim | 2 | 835 | 3 |" in lines and "| attack:blackbox | 2 | 1800 | 1200 |" in lines
    assert lines[-1] == "| all stages | | 2635 | |"  # the quick run's line is another job's
    assert demo_summary.stage_time_lines("", "demo") == ["No demo stage has finished yet."]


def test_the_report_leads_with_the_cnn_alone_beside_the_papers_numbers_then_our_fusion(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    header = "train,test,kind,feature,metric,mean,std,n\n"
    write(tmp_path / "runs/detector-grid-demo/results.csv", header + "white,white,known,IMFCC,test/auroc,0.788,0.017,3\n"
          "white,white,known,MFCC,test/auroc,0.608,0.070,3\nboth,noise,control,IMFCC,test/auroc,0.779,0.017,3\n")
    write(tmp_path / "runs/noise-flooding-demo/results.csv", header + "white,white,known,trained CNN,test/auroc,0.788,0.017,3"
          '\nwhite,white,known,"CNN + noise flooding 20 dB, rule chosen on val",test/auroc,0.999,0.001,3\n')
    demo_summary.main([])
    text = (tmp_path / "runs/demo-summary-demo.md").read_text()
    assert text.startswith("## The paper's method: the CNN alone")
    assert "| known white-box | 0.788 ± 0.017 | 0.980 | 0.999 ± 0.001 |" in text
    assert "| noise control, trained on both (0.5 wanted) | 0.779 ± 0.017 | - | - |" in text
    assert "| known black-box | - | 0.991 | - |" in text  # a row the run has not measured says so


def test_the_quick_report_reads_the_quick_pipeline_and_its_inline_grid_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the grid's inline sources name set files relative to the repository root
    write(tmp_path / "runs/asr-quick/results.json", json.dumps({"metrics": {"test/cer": 0.2, "test/wer": 0.5}}))
    write(tmp_path / "data/adversarial/blackbox-quick/corpus.json", json.dumps({"complete": True, "summary": {"attack": ATTACK}}))
    demo_summary.main(["--scale", "quick"])
    text = (tmp_path / "runs/demo-summary-quick.md").read_text()
    assert "test/cer = 0.2000, test/wer = 0.5000" in text and "runs/kws-quick/results.json is missing" in text
    assert "| blackbox-quick | 270 |" in text and "| whitebox-quick | not built |" in text
    assert "| kws-cw-yes-right-quick | not built |" in text and "demo |" not in text
    assert "runs/detector-grid-quick/results.md is missing" in text


def test_victim_lines_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "runs/kws-quick/results.json", json.dumps({"metrics": {"test/acc": 0.9146}}))
    demo_summary.main(["--scale", "quick", "--victims", "[kws]"])
    assert capsys.readouterr().out == "- KWS victim, on unseen voices: test/acc = 0.9146\n"
    assert not list((tmp_path / "runs").glob("demo-summary*"))
