"""The playground page in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Never runs `playwright install`: it launches the system browser ($MODDECODE_CHROMIUM, else `chromium`
on the PATH, else /usr/bin/chromium). Skips with the reason if either is missing, except in CI
(`CI=true`), where a missing browser fails the run: the playground must be tested where it matters
(`.ci/run` installs Debian's chromium). All traffic stays on the loopback server; any other request
is aborted and fails the test.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest


def skip_unless_ci(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI=true, so the playground browser test may not be skipped: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    import fastapi  # noqa: F401
    from playwright import sync_api
except ImportError as exc:
    skip_unless_ci(f"needs the server extras and `pip install playwright` (no browser download): {exc}")

from moddecode import MOD, Policy  # noqa: E402
from moddecode.policy import ModelCache  # noqa: E402
from moddecode.server import BackgroundServer, create_app  # noqa: E402

CHROMIUM = os.environ.get("MODDECODE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    skip_unless_ci(f"no Chromium binary ({CHROMIUM}): install it with `apt-get install -y chromium`")

pytestmark = pytest.mark.timeout(180)
KEY = "playground-key"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PROMPT = "tell me about the sky"


class SlowMOD(MOD):
    """Pauses before each decode step chooses its tokens, so the page visibly receives text in several steps
    (the server decodes on the engine's loop, not through `MOD.stream`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        make_loop = self.engine.loop

        def slow_loop(*loop_args, **loop_kwargs):
            loop = make_loop(*loop_args, **loop_kwargs)
            choose = loop._choose

            def slow_choose(events):
                time.sleep(0.05)
                return choose(events)

            loop._choose = slow_choose
            return loop

        self.engine.loop = slow_loop


@pytest.fixture(scope="module")
def mod(base_a, adapters):
    cache = ModelCache()
    return SlowMOD([
        Policy.load(str(base_a), adapter=adapters[0], name="lora0", cache=cache),
        Policy.load(str(base_a), adapter=adapters[2], name="lora2", cache=cache),
        Policy.load(str(base_a), system_prompt="please be funny", name="funny", cache=cache),
    ], reference=Policy.load(str(base_a), name="reference", cache=cache))  # sliders rarely sum to 1


@pytest.fixture(scope="module")
def server(mod):
    with BackgroundServer(create_app(mod, api_key=KEY, batch_window_ms=50)) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the playground, API key entered, with foreign requests blocked and recorded."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    foreign = []

    def only_loopback(route):
        if route.request.url.startswith(server.url + "/"):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(server.url + "/")
    page.fill("#api-key", KEY)
    page.locator("#api-key").blur()  # fires `change`: the page reloads the policy set with the key
    page.wait_for_selector("#w-range-2")
    yield page
    context.close()
    assert foreign == [], f"the page tried to reach other hosts: {foreign}"


def test_slider_sets_the_weights_and_streamed_text_appears(page, mod, server):
    weights = [1.0, 0.0, 0.3333]  # End on the first slider, Home on the second, the third stays uniform
    expected = mod.generate(PROMPT, weights, max_new_tokens=12, return_diagnostics=True)
    assert len(expected.token_ids) >= 3, "test data: the expected answer should take several tokens"
    page.focus("#w-range-0")
    page.keyboard.press("End")
    page.focus("#w-range-1")
    page.keyboard.press("Home")
    assert [page.input_value(f"#w-num-{i}") for i in range(3)] == ["1", "0", "0.3333"]
    page.fill("#max-tokens", "12")
    page.fill("#prompt", PROMPT)
    # Record every text length the output shows while it streams.
    page.evaluate("""() => {
        window.__lengths = [];
        new MutationObserver(() => window.__lengths.push(document.getElementById('output').textContent.length))
            .observe(document.getElementById('output'), {childList: true, characterData: true, subtree: true});
    }""")
    with page.expect_request("**/v1/chat/completions") as request:
        page.click("#generate")
    body = request.value.post_data_json
    assert body["weights"] == weights and body["stream"] is True and body["max_tokens"] == 12
    page.wait_for_selector("#status[data-state=done]")
    assert page.text_content("#output") == expected.text
    lengths = [n for n in page.evaluate("window.__lengths") if n > 0]
    assert len(set(lengths)) > 1, f"text arrived in one piece, not streamed: {lengths}"


def test_side_by_side_runs_each_weighting_together(page, mod, server):
    page.fill("#max-tokens", "8")
    page.fill("#prompt", PROMPT)
    page.click("#add-presets")  # each objective alone, then uniform
    vectors = [[float(x) for x in v.split(",")] for v in page.eval_on_selector_all(
        "#weightings input", "inputs => inputs.map(i => i.value)")]
    assert vectors == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.3333, 0.3333, 0.3333]]
    scheduler = server.app.state.scheduler
    before = len(scheduler.batch_sizes)
    page.click("#compare-run")
    page.wait_for_function("document.querySelectorAll('#columns .column[data-finish]').length === 4")
    texts = page.eval_on_selector_all("#columns .column pre", "pres => pres.map(p => p.textContent)")
    assert texts == [mod.generate(PROMPT, w, max_new_tokens=8) for w in vectors]
    assert max(list(scheduler.batch_sizes)[before:]) > 1, "the side-by-side requests were not decoded together"


def test_server_errors_are_shown(page):
    page.select_option("#divergence", "forward_kl")
    for i in range(3):
        page.fill(f"#w-num-{i}", "-1")
    page.click("#generate")
    page.wait_for_selector("#status[data-state=error]")
    assert "no token is feasible" in page.text_content("#status")


@pytest.mark.parametrize("divergence,strategy,shown,hidden", [
    ("reverse_kl", "greedy", [], ["#alpha", "#temperature", "#top-p", "#top-k", "#seed", "#num-beams"]),
    ("alpha", "sample", ["#alpha", "#temperature", "#top-p", "#top-k", "#seed"], ["#num-beams"]),
    ("jsd", "beam", ["#num-beams"], ["#alpha", "#temperature", "#top-p", "#top-k", "#seed"]),
])
def test_only_the_settings_that_apply_are_shown(page, divergence, strategy, shown, hidden):
    """A field the request ignores (alpha outside the alpha divergence, sampling knobs when greedy) is hidden."""
    page.select_option("#divergence", divergence)
    page.select_option("#strategy", strategy)
    for selector in shown:
        assert page.is_visible(selector), f"{selector} should be shown for {divergence}/{strategy}"
    for selector in hidden:
        assert page.is_hidden(selector), f"{selector} is shown, but {divergence}/{strategy} ignores it"
