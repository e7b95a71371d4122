"""edge-serve's web page at ``/`` in a real browser (Selenium driving Debian's headless Chromium).

The page is read the way a person reads it: the model card, then photos uploaded through the
file input, then each result card's labels and probabilities (its data attributes and its
visible text). Those must be exactly the ``POST /v1/classify`` answer the page received
(same indices, labels, probabilities, order), and that answer the API's for the same files
asked separately. The stand-in model's top-1 varies with the photo, so the comparison is
not vacuous. Needs Debian's chromium and chromium-driver (skipped, saying so, without them);
Selenium is told the driver's path, so Selenium Manager never downloads anything.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 60  # every wait is bounded: a broken page fails, never hangs
MODEL = "standin"
TOP_K = 5  # the page's default


def _missing_browser() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        return f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
    return None


@pytest.fixture(scope="module")
def served(exported):
    from serve_helpers import serving

    with serving(f"{MODEL}={exported['fp32']}") as s:
        yield s


@pytest.fixture(scope="module")
def driver():
    why = _missing_browser()
    if why:
        pytest.skip(why)

    profile = tempfile.mkdtemp(prefix="edge-serve-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)  # with the Service path below, Selenium Manager never runs
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1280,900", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    d.set_page_load_timeout(WAIT_S)
    d.set_script_timeout(WAIT_S)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, served, cond, what: str):
    """Wait (bounded) for cond(driver); on timeout, fail with the page's status line and the server's log."""
    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(cond)
    except TimeoutException:
        status = driver.execute_script("return document.querySelector('[data-testid=status]')?.textContent")
        log = "\n".join(list(served.log)[-20:])
        pytest.fail(f"timed out after {WAIT_S} s waiting for {what}; page status: {status!r}\nserver log tail:\n{log}")


def _open_page(driver, served) -> dict:
    """Load / and wait until the model card shows the served model; returns the API's card."""
    status, answer = served.json("GET", "/v1/models", timeout=WAIT_S)
    assert status == 200, answer
    card = next(c for c in answer["models"] if c["name"] == MODEL)
    driver.get(f"{served.url}/")

    def shown(d):
        el = d.find_element(By.CSS_SELECTOR, "[data-testid=model-card]")
        field = {e.get_attribute("data-field"): e.text for e in el.find_elements(By.CSS_SELECTOR, "dd[data-field]")}
        return field if MODEL in el.text and field.get("Model precision") == card["model_precision"] else None

    field = _wait(driver, served, shown, "the model card")
    assert field["Compute precision"] == card["compute_precision"]
    assert field["Engine"] == card["engine"] and field["Provider"] == card["provider"]
    assert field["Classes"] == str(card["classes"]) and field["Labels"] == str(len(card["labels"]))
    assert field["Weights origin"] == card["weights_origin"]
    return card


# Records the JSON of every /v1/classify answer the page itself receives, for the page-vs-answer check.
_RECORD_ANSWERS = """
window.__answers = [];
const original = window.fetch;
window.fetch = async (...args) => {
  const r = await original(...args);
  if (String(args[0]).includes("/v1/classify") && r.ok) window.__answers.push(await r.clone().json());
  return r;
};
"""


def _upload(driver, served, paths: list[Path]) -> list:
    """Choose the files in the file input and wait until every result card is filled in."""
    driver.execute_script(_RECORD_ANSWERS)
    driver.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in paths))

    def done(d):
        cards = d.find_elements(By.CSS_SELECTOR, "[data-testid=result]")
        if len(cards) == len(paths) and all(c.get_attribute("data-state") != "pending" for c in cards):
            return cards
        return None

    cards = _wait(driver, served, done, f"{len(paths)} result cards")
    status = driver.find_element(By.CSS_SELECTOR, "[data-testid=status]").text
    assert "classified" in status and " ms" in status, status  # the round-trip time
    assert [c.get_attribute("data-filename") for c in cards] == [p.name for p in paths]
    return cards


def _read_card(card) -> list[dict]:
    """One result card's predictions, from its data attributes and from what is visible."""
    rows = []
    for li in card.find_elements(By.CSS_SELECTOR, "[data-testid=prediction]"):
        rows.append({
            "rank": int(li.get_attribute("data-rank")),
            "index": int(li.get_attribute("data-index")),
            "label": li.get_attribute("data-label"),
            "probability": float(li.get_attribute("data-probability")),
            "shown_label": li.find_element(By.CSS_SELECTOR, ".lbl").text,
            "shown_percent": li.find_element(By.CSS_SELECTOR, ".pct").text,
        })
    return rows


def _classify_api(served, paths: list[Path], top_k: int = TOP_K) -> list[dict]:
    """POST /v1/classify with the files as one multipart body, as the page sends them."""
    from serve_helpers import multipart

    body, ctype = multipart([(p.name, p.read_bytes()) for p in paths])
    status, rows = served.json("POST", f"/v1/classify?model={MODEL}&top_k={top_k}", body,
                               {"Content-Type": ctype}, timeout=WAIT_S)
    assert status == 200, rows
    assert [row["path"] for row in rows] == [p.name for p in paths]
    return rows


def _page_answers(driver) -> list[dict]:
    """The rows of the /v1/classify answers the page received (see _RECORD_ANSWERS), in order."""
    return [row for answer in driver.execute_script("return window.__answers") for row in answer]


def _assert_page_matches_api(shown: list[dict], row: dict, received: dict) -> None:
    """The card shows exactly the answer the page received (indices, labels, probabilities, order);
    that answer is the API's for the same file, asked separately. The server may batch the two
    requests differently, so the separate answer's probabilities agree to 1e-6 (in practice exactly)."""
    api = row["predictions"]
    assert len(api) == TOP_K, row
    assert received["path"] == row["path"]
    assert [(s["rank"], s["index"], s["label"], s["probability"]) for s in shown] == \
        [(p["rank"], p["index"], p["label"], float(p["probability"])) for p in received["predictions"]]
    assert [(s["rank"], s["index"], s["label"]) for s in shown] == [(p["rank"], p["index"], p["label"]) for p in api]
    assert [s["probability"] for s in shown] == pytest.approx([p["probability"] for p in api], rel=0, abs=1e-6)
    for s, p in zip(shown, api):
        assert s["shown_label"] == p["label"]
        assert s["shown_percent"].endswith("%") and len(s["shown_percent"].split(".")[1]) == 3, s  # 2 decimals + %
        assert abs(float(s["shown_percent"][:-1]) - 100 * p["probability"]) <= 0.005 + 1e-9, (s, p)


def _screenshot(driver, path: Path) -> Path:
    """A full-page PNG (the whole document, not only the window)."""
    size = driver.execute_script("const e = document.documentElement; return [e.scrollWidth, e.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def _js_errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE" and e.get("source") == "javascript"]


def test_page_shows_what_the_api_answers(driver, served, photos, tmp_path):
    by_name = {p.name: p for p in photos}
    files = []
    for name in ("chelsea.png", "astronaut.png"):  # two JPEGs and a PNG: both decoders, one request
        dst = tmp_path / name.replace(".png", ".jpg")
        Image.open(by_name[name]).convert("RGB").save(dst, "JPEG", quality=90)
        files.append(dst)
    files.append(Path(shutil.copy(by_name["coffee.png"], tmp_path / "coffee.png")))

    _open_page(driver, served)
    cards = _upload(driver, served, files)
    api = _classify_api(served, files)
    received = _page_answers(driver)
    assert len(received) == len(files)
    top1 = []
    for card, row, got, path in zip(cards, api, received, files):
        shown = _read_card(card)
        _assert_page_matches_api(shown, row, got)
        assert path.name in card.text
        assert card.find_element(By.TAG_NAME, "img").get_attribute("src").startswith("blob:")  # the thumbnail
        top1.append(shown[0]["index"])
    print(f"top-1 per photo: {dict(zip([p.name for p in files], top1))}")
    assert len(set(top1)) > 1, f"every photo got the same top-1 ({top1}): the comparison would prove nothing"
    assert not _js_errors(driver)

    png = _screenshot(driver, tmp_path / "edge-serve-page.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    with Image.open(png) as im:
        assert im.width >= 800 and im.height >= 800, im.size
        assert len(im.convert("L").getcolors(256)) > 50, "the screenshot is (nearly) blank"
    print(f"screenshot: {png}")


def test_a_file_that_is_not_an_image_shows_its_error(driver, served, photos, tmp_path):
    cat = tmp_path / "chelsea.jpg"
    Image.open(next(p for p in photos if p.name == "chelsea.png")).convert("RGB").save(cat, "JPEG", quality=90)
    notes = tmp_path / "notes <img src=x onerror=alert(1)>.jpg"  # shown as text, never as markup
    notes.write_text("This is a text file with a .jpg name.\n" * 20)

    _open_page(driver, served)
    card_notes, card_cat = _upload(driver, served, [notes, cat])
    api_notes, api_cat = _classify_api(served, [notes, cat])

    assert api_notes.get("error") and not api_notes.get("predictions")
    assert card_notes.get_attribute("data-state") == "error"
    assert not card_notes.find_elements(By.CSS_SELECTOR, "[data-testid=prediction]")
    err = card_notes.find_element(By.CSS_SELECTOR, "[data-testid=error]")
    assert err.text == api_notes["error"]
    r, g, b = (int(float(x)) for x in err.value_of_css_property("color").split("(")[1].split(",")[:3])
    assert r > 150 and r > g + 60 and r > b + 60, f"the error is not shown in red: {err.value_of_css_property('color')}"
    assert card_notes.find_element(By.TAG_NAME, "h3").text == notes.name
    assert not driver.find_elements(By.CSS_SELECTOR, "[onerror]")

    assert card_cat.get_attribute("data-state") == "done"
    _assert_page_matches_api(_read_card(card_cat), api_cat, _page_answers(driver)[1])
    assert "1 could not be read" in driver.find_element(By.CSS_SELECTOR, "[data-testid=status]").text
    assert not _js_errors(driver)
