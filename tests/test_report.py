"""Reports from run directories: HTML (escaped, sortable, self-contained), Markdown, CSV, DataFrame, diffs.

Runs are produced by the real pipeline on the fake backend; one run's model answers with
hostile text (script tags, event handlers, jinja syntax) that must only ever show as text.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from evalharness.cli import main
from evalharness.errors import DataError, UsageError
from evalharness.execution.pipeline import RunConfig, evaluate
from evalharness.report.data import leaderboard, load_runs
from evalharness.report.html import render_csv, render_html, render_markdown, results_frame, write_report
from evalharness.report.samples import diffs, task_samples
from evalharness.report.svg import fmt
from evalharness.spec.task import load_task_file

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = {
    "6 * 7": "<script>document.title='PWNED'</script>",
    "Say yes": "<img src=x onerror=\"document.title='PWNED'\">",
    "Largest planet": "</textarea></pre>{{ 7*7 }}{% raw %}x{% endraw %}</script><!--",
    "Capital of France": "Paris",
}


def _evaluate(out: Path, **model_args: Any) -> Path:
    cfg = RunConfig(
        tasks=[load_task_file(FIXTURES / "mc.yaml"), load_task_file(FIXTURES / "qa.yaml")],
        model="fake", model_args=model_args, output=out, use_cache=False, progress=False, bootstrap_resamples=200,
    )
    evaluate(cfg)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("runs")
    return [
        _evaluate(base / "a"),
        _evaluate(base / "b", seed=2),
        _evaluate(base / "c", script=HOSTILE, prefer="blue"),
    ]


def _results(run: Path) -> dict[str, Any]:
    return json.loads((run / "results.json").read_text())


def _samples(run: Path, task: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "samples" / f"{task}.jsonl").read_text().splitlines()]


class _Cells(HTMLParser):
    """The leaderboard table's rows as lists of (attrs, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_board = False
        self.in_body = False
        self.rows: list[list[tuple[dict[str, str | None], str]]] = []
        self.heads: list[dict[str, str | None]] = []
        self.cell: tuple[dict[str, str | None], list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id") == "board":
            self.in_board = True
        elif self.in_board and tag == "tbody":
            self.in_body = True
        elif self.in_board and tag == "th" and "data-col" in a:
            self.heads.append(a)
        elif self.in_body and tag == "tr":
            self.rows.append([])
        elif self.in_body and tag == "td":
            self.cell = (a, [])

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            self.rows[-1].append((self.cell[0], "".join(self.cell[1])))
            self.cell = None
        elif tag == "table" and self.in_board:
            self.in_board = self.in_body = False


def _json_blocks(html: str) -> dict[str, Any]:
    blocks = re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', html, flags=re.S)
    return {name: json.loads(body) for name, body in blocks}


# ------------------------------------------------------------------------------------------ HTML


def test_model_output_is_escaped_and_page_is_self_contained(runs: list[Path]) -> None:
    html = render_html(runs)
    for text in HOSTILE.values():
        assert "<" not in text or text not in html
    assert "<img" not in html and "onerror=\"document" not in html
    # Exactly our own script elements: the task index, one data block per task, colors, the code.
    assert html.count("<script") == 1 + 2 + 1 + 1
    assert "</textarea>" not in html and "<!--" not in html
    # No network: nothing is loaded from anywhere.
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "@import" not in html
    # The data blocks still carry the exact model output, byte for byte, for the page to show as text.
    blocks = _json_blocks(html)
    qa = next(b for b in blocks.values() if isinstance(b, dict) and b.get("task") == "toy_qa")
    c = qa["runs"].index(load_runs(runs)[2].label)
    shown = {s["id"]: s["o"][c]["t"][0] for s in qa["samples"]}
    assert shown["b"] == HOSTILE["6 * 7"] and shown["d"] == HOSTILE["Largest planet"]
    assert "{{ 7*7 }}" in html and "49" not in shown["d"]  # jinja syntax in data is never evaluated


def test_leaderboard_cells_sort_data_and_best_marks(runs: list[Path]) -> None:
    html = render_html(runs)
    p = _Cells()
    p.feed(html)
    heads = p.heads
    assert [h.get("data-sort") for h in heads[:2]] == ["text", "num"]
    assert len(heads) == 2 + 4  # model, mean rank, toy_mc acc/acc_norm, toy_qa exact_match/f1
    res = [_results(r) for r in runs]
    board = leaderboard(load_runs(runs))
    labels = [row.run.label for row in board.rows]
    assert [r[0][1].strip() for r in p.rows] == labels
    acc = {row.run.label: row.cells[0] for row in board.rows}
    by_label = {lab: res[runs.index(row.run.path)] for lab, row in zip(labels, board.rows, strict=True)}
    best_value = max(r["tasks"]["toy_mc"]["metrics"]["acc"]["value"] for r in res)
    for row in p.rows:
        label = row[0][1].strip()
        value = by_label[label]["tasks"]["toy_mc"]["metrics"]["acc"]["value"]
        attrs, text = row[2]
        assert float(attrs["data-v"] or "nan") == value  # what the click-to-sort code reads
        assert text.startswith(fmt(value))
        assert ("best" in (attrs.get("class") or "")) == (value == best_value)
        assert acc[label] is not None and acc[label].best == (value == best_value)
    # Mean rank: the order of the rows and the numbers agree with acc and exact_match ranks.
    ranks = [row.mean_rank for row in board.rows]
    assert ranks == sorted(ranks)  # type: ignore[type-var]


def test_charts_are_inline_svg_with_titles(runs: list[Path]) -> None:
    html = render_html(runs)
    svgs = re.findall(r"<svg class=\"chart\".*?</svg>", html, flags=re.S)
    assert len(svgs) == 4 + 2  # one bar chart per (task, metric), one histogram per task
    assert all("<title>" in s for s in svgs)
    assert any("toy_mc · acc</title>" in s for s in svgs)
    assert "per-sample exact_match" in html


def test_bradley_terry_and_judge_details_render(runs: list[Path], tmp_path: Path) -> None:
    run = tmp_path / "arena"
    shutil.copytree(runs[0], run)
    res = _results(run)
    res["arena"] = {
        "ratings": {"model-x": {"rating": 980.0, "ci_low": 950.0, "ci_high": 1010.0},
                    "model-y": {"rating": 1040.5, "ci_low": 1001.0, "ci_high": 1077.0}},
        "position_consistency": 0.875,
        "win_rate": {"model-y": {"model-x": 0.7}, "model-x": {"model-y": 0.3}},
    }
    res["tasks"]["toy_qa"]["metrics"]["f1"]["n_unparseable"] = 1
    (run / "results.json").write_text(json.dumps(res))
    recs = _samples(run, "toy_qa")
    recs[0]["score_details"] = {"f1": {"verdict": "unparseable", "rationale": "<b>no verdict line</b>", "status": "unparseable"}}
    (run / "samples" / "toy_qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    html = render_html([run])
    section = html[html.index('id="bradley-terry"'):html.index('id="charts"')]
    assert section.index("model-y") < section.index("model-x")  # sorted by rating
    assert "1040.5" in section and "[1001.0, 1077.0]" in section and "87.5%" in section
    assert "Win rate" in section
    assert 'id="judges"' in html
    qa = next(b for b in _json_blocks(html).values() if isinstance(b, dict) and b.get("task") == "toy_qa")
    first = qa["samples"][0]["o"][0]
    assert first["k"] == "u" and first["d"]["f1"]["rationale"] == "<b>no verdict line</b>"
    assert "<b>no verdict" not in html
    res["arena"]["ratings"]["model-x"] = {"rating": "high"}
    (run / "results.json").write_text(json.dumps(res))
    with pytest.raises(DataError, match=r"arena: ratings.model-x.rating"):
        render_html([run])


def test_statuses_follow_the_01_metric(runs: list[Path]) -> None:
    ts = task_samples("toy_mc", load_runs(runs))
    assert ts.payload["correct"] == {"metric": "acc", "value": 1.0}
    for k, run in enumerate(runs):
        want = {r["id"]: ("r" if r["scores"]["acc"] == 1.0 else "w") for r in _samples(run, "toy_mc")}
        got = {s["id"]: s["o"][k]["k"] for s in ts.payload["samples"]}
        assert got == want
    qa = task_samples("toy_qa", load_runs(runs))
    assert qa.payload["correct"] == {"metric": "exact_match", "value": 100.0}  # SQuAD's 0-100 scale
    assert {s["id"]: s["o"][2]["k"] for s in qa.payload["samples"]}["a"] == "r"  # "Paris" is right


def test_diff_finds_the_samples_whose_score_changed(runs: list[Path]) -> None:
    loaded = load_runs(runs)
    ts = task_samples("toy_mc", loaded)
    base = {r["id"]: r["scores"]["acc"] for r in _samples(runs[0], "toy_mc")}
    other = {r["id"]: r["scores"]["acc"] for r in _samples(runs[1], "toy_mc")}
    changed = {i for i in base if base[i] != other[i]}
    assert changed  # seeds 0 and 2 disagree somewhere, or this test proves nothing
    d = diffs(ts, loaded)[0]
    assert d.run_b == loaded[1].label and d.changed == len(changed) and d.common == 4
    assert d.improved == sum(other[i] > base[i] for i in changed) and d.regressed == sum(other[i] < base[i] for i in changed)
    flipped = {s["id"] for s in ts.payload["samples"] if s.get("f")}
    third = {r["id"]: r["scores"]["acc"] for r in _samples(runs[2], "toy_mc")}
    assert flipped == {i for i in base if len({base[i], other[i], third[i]}) > 1}


# ------------------------------------------------------------------------------ md, csv, frame


def test_markdown_numbers_equal_results_json(runs: list[Path]) -> None:
    md = render_markdown(runs)
    lines = [x for x in md.splitlines() if x.startswith("| ")]
    def literal(cell: str) -> str:  # names are Markdown-escaped (toy\_mc): read back as text
        return re.sub(r"\\(.)", r"\1", cell.strip())

    header = [literal(c) for c in lines[0].strip("|").split("|")]
    assert header[2:] == ["toy_mc acc ↑", "toy_mc acc_norm ↑", "toy_qa exact_match ↑", "toy_qa f1 ↑"]
    labels = {r.label: r.path for r in load_runs(runs)}
    for line in lines[1:4]:
        cells = [literal(c).strip("*") for c in line.strip("|").split("|")]
        res = _results(labels[cells[0]])
        for cell, (task, metric) in zip(cells[2:], [("toy_mc", "acc"), ("toy_mc", "acc_norm"), ("toy_qa", "exact_match"), ("toy_qa", "f1")],
                                        strict=True):
            m = res["tasks"][task]["metrics"][metric]
            assert cell == f"{fmt(m['value'])} [{fmt(m['ci_low'])}, {fmt(m['ci_high'])}]"
    assert "### Run-to-run changes" in md


def test_csv_and_dataframe_rows(runs: list[Path]) -> None:
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(render_csv(runs))))
    expected = sum(len(t["metrics"]) for r in runs for t in _results(r)["tasks"].values())
    assert len(rows) == expected == 12
    res = _results(runs[1])
    row = next(r for r in rows if r["run"] == str(runs[1]) and r["metric"] == "acc")
    assert float(row["value"]) == res["tasks"]["toy_mc"]["metrics"]["acc"]["value"]
    assert row["task_file_hash"] == res["tasks"]["toy_mc"]["fingerprint"]["task_file_hash"]
    df = results_frame(runs)
    assert df.shape[0] == expected
    pivot = df.pivot_table(index="model", columns=["task", "metric"], values="value")
    assert pivot.loc[load_runs(runs)[1].label, ("toy_mc", "acc")] == res["tasks"]["toy_mc"]["metrics"]["acc"]["value"]


# ------------------------------------------------------------------------------------- CLI, errors


def test_cli_writes_each_format(runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(runs[0]), str(runs[1]), "--output", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(runs[0]), "--output", str(tmp_path / "r.md")]) == 0  # format from the suffix
    assert (tmp_path / "r.md").read_text().startswith("## Evaluation results")
    capsys.readouterr()
    assert main(["report", str(runs[0]), "--format", "csv"]) == 0
    assert capsys.readouterr().out.count("\n") == 1 + 4


def _bad(tmp_path: Path, name: str, text: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "results.json").write_text(text)
    return d


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such run directory"),
    ("{not json", "not a valid results file"),
    ('{"tasks": {}}', "schema_version: missing"),
    ('{"schema_version": 1, "tasks": []}', "tasks: expected an object"),
    ('{"schema_version": 1, "tasks": {"t": {"metrics": {"acc": {"value": "high"}}}}}', "tasks.t.metrics.acc.value"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str) -> None:
    run = tmp_path / "missing" if content is None else _bad(tmp_path, "bad", content)
    assert main(["report", str(run), "--output", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and str(run) in err
    assert not (tmp_path / "r.html").exists()


def test_usage_errors(runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="given twice"):
        load_runs([runs[0], runs[0]])
    with pytest.raises(UsageError, match="--format"):
        write_report([runs[0]], None, "pdf")
    with pytest.raises(UsageError, match="is a directory"):
        write_report([runs[0]], tmp_path, "md")


# ----------------------------------------------------------------------------- in a real browser


class _Cdp:
    """Just enough of the Chrome DevTools protocol over a stdlib websocket to click and read a page."""

    def __init__(self, url: str) -> None:
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        head, self.buf = head.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.n = 0
        self.events: list[dict[str, Any]] = []

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("devtools socket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _recv(self) -> dict[str, Any]:
        parts = []
        while True:
            b0, b1 = self._take(2)
            n = b1 & 0x7F
            if n >= 126:
                n = int.from_bytes(self._take(2 if n == 126 else 8), "big")
            payload = self._take(n)
            if b0 & 0x0F in (0x1, 0x0):
                parts.append(payload)
                if b0 & 0x80:
                    message: dict[str, Any] = json.loads(b"".join(parts))
                    return message

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.n += 1
        data = json.dumps({"id": self.n, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536
                                else bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        while True:
            msg = self._recv()
            if msg.get("id") == self.n:
                assert "error" not in msg, msg
                result: dict[str, Any] = msg.get("result", {})
                return result
            self.events.append(msg)

    def js(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")


@pytest.fixture
def browser(tmp_path: Path):  # type: ignore[no-untyped-def]
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    profile = tempfile.mkdtemp(dir=tmp_path)
    log = (tmp_path / "chromium.log").open("w")
    proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1400,1000", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.time() + 30
        port = None
        while port is None and time.time() < deadline:
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", (tmp_path / "chromium.log").read_text())
            port = m.group(1) if m else None
            time.sleep(0.1)
        assert port, (tmp_path / "chromium.log").read_text()[-2000:]
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        cdp = _Cdp(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"])
        for domain in ("Runtime", "Log", "Page"):
            cdp.call(f"{domain}.enable")
        yield cdp
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _open(cdp: _Cdp, path: Path) -> float:
    started = time.time()
    cdp.call("Page.navigate", url=path.resolve().as_uri())
    probe = "document.readyState + ':' + ((document.documentElement && document.documentElement.dataset.ready) || '')"
    while cdp.js(probe) != "complete:1":
        assert time.time() - started < 30, "the page never finished its set-up"
        time.sleep(0.05)
    return time.time() - started


def test_report_in_headless_chromium(browser: _Cdp, runs: list[Path], tmp_path: Path) -> None:
    cdp = browser
    out = tmp_path / "report.html"
    write_report(runs, out)
    _open(cdp, out)
    errors = [e for e in cdp.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in {"error", "assert"})
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    assert not cdp.js("document.title").startswith("PWNED")
    # Sorting by clicking: acc, best first, then reversed on a second click.
    labels = "Array.from(document.querySelectorAll('#board tbody tr')).map(r => r.cells[0].textContent.trim())"
    res = {r.label: _results(r.path)["tasks"]["toy_mc"]["metrics"]["acc"]["value"] for r in load_runs(runs)}
    cdp.js("document.querySelector('#board th[data-col=\"2\"]').click()")
    got = cdp.js(labels)
    assert [res[x] for x in got] == sorted(res.values(), reverse=True)
    cdp.js("document.querySelector('#board th[data-col=\"2\"]').click()")
    assert [res[x] for x in cdp.js(labels)] == sorted(res.values())
    # Filtering by clicking: "wrong" shows the samples some run got wrong.
    wrong = {r["id"] for run in runs for r in _samples(run, "toy_mc") if r["scores"]["acc"] == 0.0}
    cdp.js("document.querySelector('[data-filter=\"wrong\"]').click()")
    shown = cdp.js("Array.from(document.querySelectorAll('#s-list .sid')).map(e => e.textContent.slice(1))")
    assert set(shown) == wrong
    cdp.js("document.querySelector('[data-filter=\"all\"]').click()")
    # The hostile outputs of toy_qa are on the page as text, and nothing of them became an element.
    cdp.js("const s = document.getElementById('s-task'); s.value = '1'; s.dispatchEvent(new Event('change'))")
    texts = cdp.js("Array.from(document.querySelectorAll('#s-list pre')).map(e => e.textContent)")
    for value in HOSTILE.values():
        assert value in texts
    assert cdp.js("document.querySelectorAll('main img, #s-list script, #s-list textarea').length") == 0
    # Full-text search.
    cdp.js("const q = document.getElementById('s-search'); q.value = 'planet'; q.dispatchEvent(new Event('input'))")
    time.sleep(0.4)
    assert cdp.js("Array.from(document.querySelectorAll('#s-list .sid')).map(e => e.textContent)") == ["#d"]
    shot = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "report.png").write_bytes(shot)
    assert len(shot) > 30_000  # a blank 1400x1000 PNG is a few kilobytes
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(tmp_path / "report.png") as im:
        assert len(set(im.convert("RGB").resize((350, 250)).getdata())) > 50


def test_markdown_keeps_hostile_names_as_text() -> None:
    from evalharness.results.store import md_text

    out = md_text("[Approve](https://evil.example/x) ![](https://e/p.png) @maintainer <b>&lt; a|b")
    assert "](" not in out.replace("\\](", "").replace("\\]\\(", "") and "\\[Approve\\]\\(" in out
    assert "@\u200bmaintainer" in out and "&amp;lt;" in out and "\\<b\\>" in out and "a\\|b" in out


def test_a_huge_sample_id_is_cut_on_the_page(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    rows = [{"id": f"{i}" + "x" * 200_000, "prediction": "a", "references": ["a"]} for i in range(5)]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    assert main(["score", "--predictions", str(preds), "--metrics", "exact_match", "--output", str(out)]) == 0
    html = render_html([out])
    assert len(html) < 400_000 and "(200,001 characters)" in html  # was 1 MB of ids for five samples
