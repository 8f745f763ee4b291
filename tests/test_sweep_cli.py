"""`gsexplore sweep CONFIG.yaml --out DIR` (gsexplore.sweep_cli.main) on the demo model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gsexplore.store import load
from gsexplore.sweep_cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "data" / "sweeps").glob("*.yaml"))

CONFIG = """
title: Capitales
lang: es
backends:
  - local: demo
prompts_file: capitales_es
prompt_ids: [capital-cl, capital-fr]
grid:
  temperature: [0.0, 1.2]
repeats: 2
base:
  max_tokens: 6
"""


@pytest.fixture(autouse=True)
def _english(monkeypatch):
    """These tests read the English catalogue (`gsexplore.i18n`); Spanish is the default."""
    monkeypatch.setenv("GSEXPLORE_LANG", "en")


def test_cli_runs_a_config_writes_everything_and_resumes(tmp_path, capsys):
    cfg = tmp_path / "capitales.yaml"
    cfg.write_text(CONFIG, encoding="utf-8")
    out = tmp_path / "out"
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "8 requests to run" in printed.err
    assert "temperature" in printed.out and "distinct_2" in printed.out and "contains_expected" in printed.out
    df = load(out / "results.parquet")
    assert len(df) == 8 and df.error_type.isna().all()
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == 8 and {"cell_id", "temperature", "content", "seed"} <= set(csv.columns)
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.temperature) == {0.0, 1.2} and "contains_expected" in set(summary.metric)
    pngs = sorted(p.name for p in out.glob("*.png"))
    # default plots: metrics against the varied parameter, exact answers, a distribution
    assert pngs == sorted(["distinct_2_vs_temperature.png", "pairwise_similarity_vs_temperature.png",
                           "contains_expected_vs_temperature.png", "n_words_vs_temperature_box.png"])
    for p in out.glob("*.png"):
        assert p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000
    # the same command again resumes: nothing left to run, same rows
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "0 requests to run (8 of 8 already in the store)" in capsys.readouterr().err
    assert sorted(load(out / "results.parquet", latest=False).row_id) == sorted(df.row_id)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_configs_are_valid(example, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GS_API_KEY", "not-used-by-a-dry-run")
    assert main([str(example), "--out", str(tmp_path), "--dry-run"]) == 0
    assert "requests" in capsys.readouterr().out


def test_temperature_example_is_small():
    """temperature.yaml must run in well under a minute on two CPU cores."""
    from gsexplore.sweep_cli import _prompts, load_config
    from gsexplore.sweep import plan
    from gsexplore.backends.base import Backend
    from gsexplore.params import Params

    cfg = load_config(ROOT / "data" / "sweeps" / "temperature.yaml")

    class Nothing(Backend):
        name, model = "local", "demo"
        events = None  # type: ignore[assignment]

    sp = plan(Nothing(), _prompts(cfg), grid=cfg["grid"], repeats=cfg["repeats"], base=Params(**cfg["base"]))
    assert sp.completion_tokens_max <= 1000  # ~100 tokens/s on two cores for the demo model


def test_bad_configs_say_what_is_wrong(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("backends: [{local: demo}]\nprompts: [hola]\ngird: {temperature: [0, 1]}\n")
    assert main([str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key 'gird'; did you mean 'grid'?" in capsys.readouterr().err
    cfg.write_text("backends: [{remote: {base_url: 'https://x.test/v1', api_key: 'sk-123'}}]\nprompts: [hola]\n")
    assert main([str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "do not write the API key in the config" in capsys.readouterr().err
    cfg.write_text("backends: [{local: demo}]\nprompts: [hola]\ngrid: {temperature: [0, -1]}\n")
    assert main([str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "1 invalid setting(s) of 2" in capsys.readouterr().err


BATCH_CONFIG = """
backends:
  - remote: {base_url: "http://127.0.0.1:9/v1", model: "Qwen/Qwen3-1.7B"}
prompts: ["hola", "chau"]
grid:
  temperature: [0.1, 0.9]
repeats: 2
base:
  max_tokens: 4
"""


def test_to_batch_then_from_batch_fills_the_same_store(tmp_path, capsys):
    """--to-batch writes the requests (nothing runs: the server in the config is never contacted);
    --from-batch imports vLLM's results into DIR's store and writes the CSV as a run would."""
    import json

    cfg = tmp_path / "study.yaml"
    cfg.write_text(BATCH_CONFIG, encoding="utf-8")
    out, requests, results = tmp_path / "out", tmp_path / "requests.jsonl", tmp_path / "results.jsonl"
    assert main([str(cfg), "--out", str(out), "--to-batch", str(requests), "--batch-model", "served",
                 "--no-progress"]) == 0
    assert "8 requests in" in capsys.readouterr().out
    lines = [json.loads(x) for x in requests.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 8 and {x["body"]["model"] for x in lines} == {"served"}
    assert (tmp_path / "requests.plan.jsonl").exists()
    results.write_text("".join(json.dumps({
        "id": f"vllm-{i}", "custom_id": x["custom_id"], "error": None,
        "response": {"status_code": 200, "request_id": f"vllm-batch-{i}", "body": {
            "id": f"chatcmpl-{i}", "object": "chat.completion", "created": 0, "model": "served",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hola, ¿qué tal?"},
                         "finish_reason": "length", "stop_reason": None}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}}}) + "\n"
        for i, x in enumerate(lines)), encoding="utf-8")
    assert main([str(cfg), "--out", str(out), "--from-batch", str(results), "--no-progress", "--no-plots"]) == 0
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == 8 and set(csv.temperature) == {0.1, 0.9} and csv.seed.nunique() == 8
    capsys.readouterr()
    # everything is in the store now: a second export has nothing to write
    assert main([str(cfg), "--out", str(out), "--to-batch", str(requests), "--no-progress"]) == 0
    assert "0 requests in" in capsys.readouterr().out and requests.read_text() == ""
