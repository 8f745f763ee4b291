"""A classroom on one machine: labelled keys, the sender of each request, per-student limits, the teacher's
view (/class and gs.panels.Classroom) and the class record. A real server on 127.0.0.1 over the tiny model."""

from __future__ import annotations

import os
import stat

import httpx
import pandas as pd
import pytest

import gsexplore as gs
from gsexplore.cli import main as cli_main
from gsexplore.errors import GSExploreError
from gsexplore.serve import ServerThread, create_app, load_labelled_keys, sheet_path
from gsexplore.serve.identity import parse_key_lines
from gsexplore.store import ROW_COLUMNS

ANA, BETO, TEACHER = "clave-de-ana-0123456789", "clave-de-beto-9876543210", "clave-docente-5555555555"
SHORT = {"max_tokens": 3, "ignore_eos": True, "temperature": 0.0,
         "chat_template_kwargs": {"enable_thinking": False}}  # the tiny model's answer in `content`


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def chat(srv: ServerThread, key: str | None, text: str = "Hola", **fields) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": text}], **SHORT, **fields}
    return httpx.post(f"{srv.url}/chat/completions", json=body, headers=bearer(key), timeout=120)


@pytest.fixture(scope="module")
def room(tiny_backend, tmp_path_factory):
    store = tmp_path_factory.mktemp("class") / "class.parquet"
    app = create_app([tiny_backend], api_keys={ANA: "ana", BETO: "beto"}, admin_keys={TEACHER: "docente"},
                     class_store=store)
    with ServerThread(app) as srv:
        srv.store = store
        yield srv


# --- students named -------------------------------------------------------------------


def test_key_labels_and_alumno_defaults(tmp_path):
    f = tmp_path / "claves.txt"
    f.write_text("# la clase del lunes\nk-one-1111 ana\nk-two-2222\nk-three-333   beto  # segunda fila\n"
                 "k-four-4444\n")
    keys = load_labelled_keys(f, env={"GSEXPLORE_SERVER_KEYS": "k-env-5555"})
    assert keys == {"k-one-1111": "ana", "k-two-2222": "alumno-1", "k-three-333": "beto",
                    "k-four-4444": "alumno-2", "k-env-5555": "alumno-3"}
    # a number a label already uses is skipped
    assert parse_key_lines("a-key alumno-1\nb-key\n") == {"a-key": "alumno-1", "b-key": "alumno-2"}
    with pytest.raises(GSExploreError, match="line 1: the label 'ana maria'"):
        parse_key_lines("a-key ana maria\n", "claves.txt")


def test_make_keys_writes_fresh_keys_and_a_sheet(tmp_path, capsys):
    keys_file, admin_file = tmp_path / "claves.txt", tmp_path / "docente.txt"
    rc = cli_main(["serve", "--model", "tiny-qwen3", "--make-keys", "30", "--api-key-file", str(keys_file),
                   "--admin-key-file", str(admin_file), "--public-url", "http://10.0.0.5:8000/v1", "--keys-only"])
    assert rc == 0
    keys = load_labelled_keys(keys_file, env={})
    assert len(keys) == 30 and sorted(keys.values(), key=lambda s: int(s.split("-")[1])) == [
        f"alumno-{i}" for i in range(1, 31)]
    assert all(len(k) >= 32 for k in keys)
    admin = load_labelled_keys(admin_file, env={}, prefix="docente")
    assert list(admin.values()) == ["docente"] and not set(admin) & set(keys)
    for f in (keys_file, admin_file, sheet_path(keys_file)):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600  # keys: readable by the teacher only
    sheet = sheet_path(keys_file).read_text()
    for k, label in keys.items():
        assert k in sheet and f"<h2>{label}</h2>" in sheet
    assert "http://10.0.0.5:8000/v1" in sheet and sheet.count("gs.RemoteBackend(") == 30
    assert next(iter(admin)) not in sheet  # the teacher's key is not handed out
    out = capsys.readouterr().out
    assert "30 keys" in out and not any(k in out for k in [*keys, *admin])
    # never overwrites a key file
    assert cli_main(["serve", "--model", "tiny-qwen3", "--make-keys", "2", "--api-key-file", str(keys_file),
                     "--keys-only"]) != 0
    assert load_labelled_keys(keys_file, env={}) == keys


# --- who sent it ----------------------------------------------------------------------


def test_the_label_wins_over_user_when_keys_are_on(room):
    r = chat(room, ANA, "Soy beto, de verdad", user="beto")
    assert r.status_code == 200, r.text
    df = gs.load(room.store)
    mine = df[df["messages"].str.contains("Soy beto, de verdad")]
    assert list(mine["student"]) == ["ana"]
    assert chat(room, "clave-falsa-000000000").status_code == 401


def test_user_is_the_sender_without_keys(tiny_backend, tmp_path):
    store = tmp_path / "lab.jsonl"
    with ServerThread(create_app([tiny_backend], class_store=store)) as srv:
        assert chat(srv, None, "de carla", user="carla").status_code == 200
        assert chat(srv, None, "sin nombre").status_code == 200
        # the field goes on the wire from Params: a RemoteBackend names its sender the same way
        gs.RemoteBackend(srv.url).chat("de dora", user="dora", max_tokens=2,
                                       chat_template_kwargs={"enable_thinking": False})
        data = httpx.get(f"{srv.base}/class/data", timeout=30).json()  # no keys at all: a lab on loopback
    df = gs.load(store)
    assert dict(zip(df["prompt"], df["student"])) == {"de carla": "carla", "sin nombre": "anon", "de dora": "dora"}
    assert {s["student"] for s in data["students"]} == {"carla", "anon", "dora"}


# --- per-student limits -----------------------------------------------------------------


def test_per_key_limits_answer_429_naming_their_flag(tiny_backend):
    app = create_app([tiny_backend], api_keys={ANA: "ana", BETO: "beto"}, max_running_per_key=1, tpm_per_key=5)
    with ServerThread(app) as srv:
        # beto: one request spends more than 5 tokens; the next within the minute is refused
        assert chat(srv, BETO).status_code == 200
        r = chat(srv, BETO)
        assert r.status_code == 429 and "--tpm-per-key 5" in r.json()["error"]["message"]
        assert r.json()["error"]["type"] == "RateLimitError" and int(r.headers["Retry-After"]) >= 1
        # ana: one streamed request in progress; a second one at the same time is refused
        body = {"messages": [{"role": "user", "content": "larga"}], "max_tokens": 256, "ignore_eos": True,
                "stream": True}
        with httpx.stream("POST", f"{srv.url}/chat/completions", json=body, headers=bearer(ANA),
                          timeout=120) as held:
            assert held.status_code == 200
            lines = held.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))  # generating now
            r = chat(srv, ANA)
            assert r.status_code == 429
            assert "--max-running-per-key 1" in r.json()["error"]["message"]
            assert int(r.headers["Retry-After"]) >= 1
        metrics = httpx.get(f"{srv.base}/metrics", timeout=30).text
    errors = [line for line in metrics.splitlines() if line.startswith("gsexplore:student_errors_total{")]
    assert len(errors) == 2 and all(line.endswith("} 1.0") for line in errors)  # one per student, by label
    assert any('student="ana"' in line for line in errors) and any('student="beto"' in line for line in errors)
    assert ANA not in metrics and BETO not in metrics


# --- the teacher's view -------------------------------------------------------------------


def test_class_view_is_the_teachers_and_shows_labels_never_keys(room):
    assert chat(room, BETO, "pregunta de beto").status_code == 200
    assert httpx.get(f"{room.base}/class/data", headers=bearer(ANA), timeout=30).status_code == 403
    assert httpx.get(f"{room.base}/class", headers=bearer(BETO), timeout=30).status_code == 403
    assert httpx.get(f"{room.base}/class/data", timeout=30).status_code == 401
    r = httpx.get(f"{room.base}/class/data", headers=bearer(TEACHER), params={"metric": "n_tokens"}, timeout=60)
    assert r.status_code == 200
    d = r.json()
    beto = next(s for s in d["students"] if s["student"] == "beto")
    assert beto["finished"] >= 1 and beto["completion_tokens"] >= 3 and beto["last_latency_s"] > 0
    assert beto["waiting"] == beto["running"] == 0
    assert d["totals"]["finished"] == sum(s["finished"] for s in d["students"])
    assert "<th scope='row'>beto</th>" in d["html"] and "Alumno" in d["html"] and d["svg"].startswith("<svg")
    assert d["x"] == "temperature" and d["points"]
    page = httpx.get(f"{room.base}/class", headers=bearer(TEACHER), timeout=30).text
    english = httpx.get(f"{room.base}/class/data", headers=bearer(TEACHER), params={"lang": "en"}, timeout=60)
    assert "Student" in english.json()["html"] and "The class" in httpx.get(f"{room.base}/class?lang=en").text
    for text in (r.text, page, english.text, httpx.get(f"{room.base}/metrics").text):
        assert ANA not in text and BETO not in text and TEACHER not in text
    bad = httpx.get(f"{room.base}/class/data", headers=bearer(TEACHER), params={"metric": "nope"}, timeout=30)
    assert bad.status_code == 400 and "metric must be one of" in bad.json()["error"]["message"]


def test_classroom_panel_shows_the_room_and_hides_the_key(room):
    assert chat(room, ANA, "para el panel").status_code == 200
    panel = gs.panels.Classroom(room.url, TEACHER, refresh_s=0, lang="en")
    try:
        assert {"ana", "beto"} <= {s["student"] for s in panel.data["students"]}
        assert "<th scope='row'>ana</th>" in panel.table.value and "Student" in panel.table.value
        assert TEACHER not in repr(panel) and "students=" in repr(panel)
        assert all(TEACHER not in str(getattr(w, "value", "")) for w in (panel.status, panel.table, panel.plot))
    finally:
        panel.close()
    student = gs.panels.Classroom(room.url, ANA, refresh_s=0)
    try:
        assert student.error and "403" in student.error and ANA not in student.error
        assert ANA not in repr(student) and ANA not in student.status.value
    finally:
        student.close()


# --- the class record ---------------------------------------------------------------------


def test_class_store_has_one_row_per_finished_request_and_compares(room):
    before = len(gs.load(room.store))
    for text in ("¿Qué es un árbol?", "¿Qué es un río?"):
        for t in (0.2, 1.0):
            assert chat(room, ANA if t < 0.5 else BETO, text, temperature=t, max_tokens=6).status_code == 200
    df = gs.load(room.store)
    assert len(df) == before + 4
    new = df.iloc[before:]
    assert set(new["student"]) == {"ana", "beto"} and new["error_type"].isna().all()
    assert list(new.columns[: len(ROW_COLUMNS)]) == ROW_COLUMNS
    assert new["content"].notna().all() and new["prompt"].isin(["¿Qué es un árbol?", "¿Qué es un río?"]).all()
    assert new["user"].isna().all()  # the sender is `student`, not a setting
    journal = room.store.with_name(room.store.name + ".journal.jsonl").read_text()
    assert ANA not in journal and BETO not in journal and TEACHER not in journal
    table = df[df["temperature"].isin([0.2, 1.0])].gs.compare(by="temperature", metric="distinct_2", warn=False)
    assert list(table["temperature"]) == [1.0] and table["n"].iloc[0] == 2


# --- fair share, through the server --------------------------------------------------------


def test_a_flood_from_one_key_does_not_stall_another_students_question():
    """ana floods the room (more long requests than slots); beto's short question, sent once every slot
    is ana's and the rest of her flood waits, finishes while her flood still runs (FIFO would finish
    every one of ana's requests first)."""
    import concurrent.futures as cf
    import threading

    b = gs.LocalBackend.tiny(n_ctx=512, slots=2, shared=False)
    try:
        app = create_app([b], api_keys={ANA: "ana", BETO: "beto"})
        flood_n = 4
        full = threading.Event()  # set by the engine's own step once ana holds every slot and the rest waits

        def watch(plan: object) -> None:
            st = b.engine_stats()
            if st["running"] == 2 and st["waiting"] == flood_n - 2:
                full.set()

        b._engine.on_plan = watch
        with ServerThread(app) as srv, cf.ThreadPoolExecutor(flood_n + 1) as pool:
            long = {"max_tokens": 160, "ignore_eos": True}
            flood = [pool.submit(chat, srv, ANA, f"Contame una historia larga {i}", **long)
                     for i in range(flood_n)]
            assert full.wait(120), f"the flood never filled the engine: {b.engine_stats()}"
            assert not any(f.done() for f in flood), "a flood request ended before beto asked"
            r = chat(srv, BETO, "¿Cuánto es 2 + 2?")
            assert r.status_code == 200, r.text
            unfinished = sum(not f.done() for f in flood)
            assert unfinished > 0, "beto's question waited for ana's whole flood"
            assert b.engine_stats()["preemptions"] >= 1  # ana held every slot: her newest one made room
            assert all(f.result().status_code == 200 for f in flood)  # preempted, not lost
            assert all(f.result().json()["usage"]["completion_tokens"] == 160 for f in flood)
    finally:
        b.close()
