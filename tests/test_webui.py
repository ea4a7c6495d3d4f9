"""The web page of app.py in a real headless browser (Chromium from the system's packages, driven by Selenium), and
under a burst of concurrent requests."""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest_plugins = ["conftest_ckpt"]
ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tiny_model):
    yield from _serve(tiny_model.checkpoint)


@pytest.fixture(scope="module")
def warp_server(tiny_warp_model):
    """The page of a model that takes several references."""
    yield from _serve(tiny_warp_model.checkpoint)


def _serve(checkpoint: Path):
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT))
    log = tempfile.TemporaryFile()  # not a pipe: a server that logs more than a pipe holds must not block on it
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--checkpoint", str(checkpoint),
                             "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")[-3000:]

    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited: {output()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("app.py did not answer within 180 s")
    yield url, proc
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    binary = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no Chromium and chromedriver on this machine (make test installs the Debian packages chromium "
                    "and chromium-driver when it can)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _open(driver, url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 120).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#sketch input[type=file]")))


def _upload_and_run(driver, sketch: Path, *references: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.CSS_SELECTOR, "#sketch input[type=file]").send_keys(str(sketch))
    # several files in one input: their paths separated by newlines, as Selenium takes them
    driver.find_element(By.CSS_SELECTOR, "#reference input[type=file]").send_keys("\n".join(map(str, references)))
    for box, paths in (("sketch", [sketch]), ("reference", references)):  # landed when their file names show
        for path in paths:
            WebDriverWait(driver, 60).until(lambda d, b=box, p=path: Path(p).stem in d.find_element(By.ID, b).text)
    driver.find_element(By.ID, "run").click()


def _status(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "status").text


def test_page_colorizes_an_upload(server, browser, tiny_model, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    faces = sorted(tiny_model.faces.glob("*.png"))
    _open(browser, url)
    _upload_and_run(browser, faces[0], faces[1])
    WebDriverWait(browser, 180).until(lambda d: _status(d).startswith(("done", "error")))
    assert _status(browser).startswith("done"), _status(browser)
    src = browser.find_element(By.CSS_SELECTOR, "#output img").get_attribute("src")
    with urllib.request.urlopen(src, timeout=30) as response:
        out = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
    assert out.shape == (tiny_model.size, tiny_model.size, 3)
    for given in faces[:2]:
        assert not np.array_equal(out, np.asarray(Image.open(given).convert("RGB")))


def test_page_colorizes_with_two_reference_uploads(warp_server, browser, tiny_warp_model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = warp_server
    faces = sorted(tiny_warp_model.faces.glob("*.png"))
    _open(browser, url)
    _upload_and_run(browser, faces[0], faces[1], faces[2])
    WebDriverWait(browser, 180).until(lambda d: _status(d).startswith(("done", "error")))
    assert _status(browser).startswith("done") and "2 references" in _status(browser), _status(browser)
    src = browser.find_element(By.CSS_SELECTOR, "#output img").get_attribute("src")
    with urllib.request.urlopen(src, timeout=30) as response:
        out = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
    assert out.shape == (tiny_warp_model.size, tiny_warp_model.size, 3)
    shown = browser.find_element(By.CSS_SELECTOR, "#shown-reference img").get_attribute("src")
    with urllib.request.urlopen(shown, timeout=30) as response:  # both references side by side
        strip = Image.open(io.BytesIO(response.read()))
    assert strip.width == 2 * strip.height


def test_page_reports_a_corrupt_upload(server, browser, tiny_model, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(Path(sorted(tiny_model.faces.glob("*.png"))[0]).read_bytes()[:40])  # a truncated PNG
    _open(browser, url)
    _upload_and_run(browser, corrupt, sorted(tiny_model.faces.glob("*.png"))[1])
    WebDriverWait(browser, 180).until(lambda d: _status(d).startswith(("done", "error")))
    assert "corrupt.png" in _status(browser) and "not a readable image" in _status(browser)


def test_burst_of_requests_is_answered_and_memory_returns(server, tiny_model):
    from gradio_client import Client, handle_file

    url, proc = server
    faces = sorted(tiny_model.faces.glob("*.png"))
    args = (handle_file(str(faces[0])), [handle_file(str(faces[1]))], None, "euler", "phi", 3, 1, 1, 0, 0, 0, 0,
            "reference")
    client = Client(url, verbose=False)
    assert client.predict(*args, api_name="/colorize")[-1].startswith("done")  # warm
    before = rss_mb(proc.pid)
    answers: list[str] = []
    clients = [Client(url, verbose=False) for _ in range(8)]  # connected first: the burst is of requests

    def one(client):
        try:
            answers.append(client.predict(*args, api_name="/colorize")[-1])
        except Exception as err:  # noqa: BLE001 - the queue's refusal reaches the client as an exception
            answers.append(f"refused: {err}")

    threads = [threading.Thread(target=one, args=(client,)) for client in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(answers) == 8 and proc.poll() is None
    for answer in answers:
        assert answer.startswith("done") or "queue" in answer.lower() or "busy" in answer.lower(), answer
    assert sum(a.startswith("done") for a in answers) >= 1
    time.sleep(2)
    assert rss_mb(proc.pid) < before + 150, (before, rss_mb(proc.pid))


def test_uploads_of_every_kind_get_a_result_or_one_line(tiny_model, tmp_path):
    """The request function itself (no browser): RGBA and 16-bit uploads colorize, a huge one is refused."""
    from apps.webui import describe_checkpoint, run_request

    page = describe_checkpoint(tiny_model.checkpoint)
    face = sorted(tiny_model.faces.glob("*.png"))[0]
    rgb = np.asarray(Image.open(face).convert("RGB"))
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray((rgb.mean(-1) * 257).astype(np.uint16)).save(tmp_path / "gray16.png")
    Image.new("L", (8000, 8000), 255).save(tmp_path / "huge.png")
    options = ("euler", "phi", 3, 1, 1, 0, 0, 0, 0, "reference")
    for upload in ("rgba.png", "gray16.png"):
        out, seen, trajectory, status = run_request(page, str(tmp_path / upload), str(face), None, *options)
        assert status.startswith("done") and out.shape[:2] == rgb.shape[:2], status
    *outputs, status = run_request(page, str(tmp_path / "huge.png"), str(face), None, *options)
    assert outputs == [None, None, None] and "8000x8000" in status and status.startswith("error")
    *outputs, status = run_request(page, None, str(face), None, *options)
    assert status.startswith("error: no sketch uploaded")


def test_hint_canvas_layers_become_one_rgba_image():
    from apps.webui import hint_layer

    assert hint_layer(None) is None and hint_layer({"background": None, "layers": []}) is None
    empty = np.zeros((8, 8, 4), np.uint8)
    assert hint_layer({"layers": [empty]}) is None  # nothing drawn
    red, blue = empty.copy(), empty.copy()
    red[1:4, 1:4] = (255, 0, 0, 255)
    blue[2:6, 2:6] = (0, 0, 255, 255)
    merged = hint_layer({"layers": [red, blue]})
    assert tuple(merged[1, 1]) == (255, 0, 0, 255) and tuple(merged[3, 3]) == (0, 0, 255, 255)  # later on top
    assert merged[7, 7, 3] == 0


def test_missing_checkpoint_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "app.py"), "--checkpoint", str(tmp_path / "none.ckpt")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "make demo" in result.stderr.strip().splitlines()[-1]


def test_grid_choice_sits_by_the_sampler_and_reaches_the_sampler(tiny_model):
    """The page's grid radio (phi: the checkpoint's own grid, its default; edm: EDM's rho grid) changes the output."""
    from apps.webui import build_page, describe_checkpoint, run_request

    page = describe_checkpoint(tiny_model.checkpoint)
    assert page.grid == "phi"
    radios = [b for b in build_page(page).blocks.values() if getattr(b, "elem_id", None) == "grid"]
    assert len(radios) == 1 and [c[0] for c in radios[0].choices] == ["phi", "edm"] and radios[0].value == "phi"
    face, other = sorted(tiny_model.faces.glob("*.png"))[:2]
    rest = (3, 1, 1, 0, 0, 0, 0, "reference")
    phi, *_, phi_status = run_request(page, str(face), str(other), None, "euler", "phi", *rest)
    edm, *_, edm_status = run_request(page, str(face), str(other), None, "euler", "edm", *rest)
    assert phi_status.startswith("done: euler, phi grid") and edm_status.startswith("done: euler, edm grid")
    assert not np.array_equal(phi, edm)
    *outputs, status = run_request(page, str(face), str(other), None, "euler", "karras", *rest)
    assert outputs == [None, None, None] and status.startswith("error: --grid must be one of phi, edm")
