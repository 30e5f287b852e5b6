"""The listening study's page: `app.py --study DIR` on a study folder written by hand (no model), rated by two
participants in headless Chromium; the database must hold exactly what they clicked. Screenshots go to
test-artifacts/browser/. The folder checks and the per-participant order are tested without a browser."""

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect
from test_app import ARTIFACTS, browser, needs_chromium, serve  # noqa: F401 (browser: the fixture)

from mixingbuddy.study import CRITERIA, SCALE, answer_order, item_order
from mixingbuddy.study.database import DATABASE_FILE, StudyDatabase
from mixingbuddy.study.page import Study, chosen_ratings
from mixingbuddy.study import CONSENT_TEMPLATE
from mixingbuddy.study.report import study_report

SEED = 7
CONSENT = """# Taking part in this listening study

You will hear four short mixes and rate the advice given on each. Enter the code you were given; we ask for nothing
else about you. You may stop at any time and continue later with the same code.
"""
ITEMS = [  # (anchor, target, category, stems present, answers as (system, text, the parser's correctness))
    ("vocals", "drums", "loud", ["bass", "drums", "vocals"], [("model", "Turn the drums down by 3 to 6 dB.", True)]),
    ("drums", "bass", "quiet", ["bass", "drums", "other"],
     [("model", "Raise the bass by 3 to 6 dB.", True), ("second", "The bass is buried: bring it up by 6 dB.", False)]),
    ("bass", "vocals", "very_loud", ["bass", "drums", "vocals"], [("model", "Lower the vocals by 3 to 6 dB.", False)]),
    ("vocals", "drums", "no_error", ["drums", "other", "vocals"], [("model", "The balance is fine as it is.", True)]),
]


def write_study(folder: Path, consent: str | None = CONSENT) -> Path:
    """A study folder of the spec's layout: study.json, one short 16-bit WAV per item and (unless None) consent.md."""
    (folder / "audio").mkdir(parents=True)
    items = []
    for number, (anchor, target, category, stems, answers) in enumerate(ITEMS):
        item_id = f"item-{number:03d}"
        tone = 0.2 * np.sin(2 * np.pi * 220 * (number + 1) * np.arange(2 * 24000) / 24000)
        sf.write(folder / "audio" / f"{item_id}.wav", tone.astype(np.float32), 24000, subtype="PCM_16")
        items.append({"item_id": item_id, "audio": f"audio/{item_id}.wav", "track": f"Song {number}", "start_sec": 10.0,
                      "anchor_stem": anchor, "target_stem": target, "error_category": category, "gain_db": 4.5,
                      "instruction": "How should the levels change?", "stems_present": stems,
                      "answers": [{"system": system, "text": text, "correct": correct}
                                  for system, text, correct in answers]})
    study = {"format": 1, "seed": SEED, "model": "tiny", "dataset": "synthetic", "split": "test", "second_model": "tiny2",
             "reference": False, "created": "2025-01-01T00:00:00+00:00", "items": items}
    (folder / "study.json").write_text(json.dumps(study, indent=2))
    if consent is not None:
        (folder / "consent.md").write_text(consent)
    return folder


@pytest.fixture
def study_folder(tmp_path) -> Path:
    return write_study(tmp_path / "study")


@pytest.mark.parametrize("missing", ["study.json", "consent.md"])
def test_a_study_folder_without_its_study_or_consent_is_refused_in_one_line(study_folder, missing, capsys):
    import app

    (study_folder / missing).unlink()
    assert app.main(["--study", str(study_folder)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("app.py: error: ") and str(study_folder / missing) in error and error.count("\n") == 1


def test_study_and_model_cannot_be_served_at_once(study_folder):
    import app

    with pytest.raises(SystemExit) as refused:
        app.main(["--study", str(study_folder), "--model", "demo_out/model"])
    assert refused.value.code == 2


def test_a_consent_text_still_the_template_gets_a_warning(tmp_path, capsys):
    import app

    folder = write_study(tmp_path / "study", consent=CONSENT_TEMPLATE)
    with socket.socket() as taken:  # a port in use: the page is built, then refused before it serves
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert app.main(["--study", str(folder), "--port", str(port)]) == 2
    warning, error = capsys.readouterr().err.splitlines()
    assert warning == f"app.py: warning: {folder / 'consent.md'} is still the template: edit it before participants " \
                      "read it"
    assert error.startswith(f"app.py: error: cannot listen on 127.0.0.1:{port}")


def test_each_participant_gets_their_own_seeded_order_and_resumes_after_what_they_answered(study_folder):
    study = Study(study_folder)
    ids = list(study.items)
    orders = {code: item_order(ids, code, SEED) for code in ("P01", "P02", "P03", "P04")}
    assert len({tuple(order) for order in orders.values()}) > 1 and all(sorted(o) == ids for o in orders.values())
    assert item_order(ids, "P01", SEED) == orders["P01"] != item_order(ids, "P01", SEED + 1)
    first, second = orders["P01"][:2]
    assert study.next_item("P01") == (1, study.items[first])
    study.database.submit("P01", first, None, skipped=True)
    assert study.next_item("P01") == (2, study.items[second]) and study.next_item("P02")[0] == 1
    for item_id in ids:
        study.database.submit("P01", item_id, None, skipped=True)
    assert study.next_item("P01") is None


def test_the_answers_of_an_item_are_shown_in_a_blind_order_per_participant(study_folder):
    study = Study(study_folder)
    pair = study.items["item-001"]
    shown = {code: [answer["system"] for answer in study.answers(pair, code)] for code in map(str, range(20))}
    assert {tuple(systems) for systems in shown.values()} == {("model", "second"), ("second", "model")}
    assert [answer["system"] for answer in study.answers(pair, "3")] == shown["3"]


def test_ratings_are_taken_only_once_every_scale_is_set():
    answers = [{"system": "second", "text": ""}, {"system": "model", "text": ""}]
    assert chosen_ratings(answers, [1, 2, 3, 4, 5, None]) is None
    assert chosen_ratings(answers[:1], [1, 2, 3, None, None, None]) == {
        "second": {"effectiveness": 1, "actionability": 2, "conventions": 3}}
    assert chosen_ratings(answers, [1, 2, 3, 4, 5, 6])["model"] == {"effectiveness": 4, "actionability": 5,
                                                                    "conventions": 6}


def test_a_missing_audio_file_is_named(study_folder):
    (study_folder / "audio" / "item-002.wav").unlink()
    with pytest.raises(FileNotFoundError, match="item-002.wav does not exist"):
        Study(study_folder)


# --- in the browser -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_study(tmp_path_factory):
    """(address, folder) of `app.py --study` serving a fresh study folder."""
    folder = write_study(tmp_path_factory.mktemp("served") / "study")
    for url in serve(tmp_path_factory.mktemp("study_uploads"), "--study", str(folder)):
        yield url, folder


class Participant:
    """One participant in a browser page: what they click, and the database rows it must give."""

    def __init__(self, page, code: str, folder: Path):
        self.page, self.code = page, code
        self.items = {item["item_id"]: item for item in json.loads((folder / "study.json").read_text())["items"]}
        self.order = item_order(list(self.items), code, SEED)
        self.responses, self.ratings = {}, {}

    def start(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("#consent", timeout=60_000)
        self.page.fill("#code input", self.code)
        self.page.get_by_label("I agree").check()
        self.page.get_by_role("button", name="Start").click()

    def expect_item(self, number: int) -> str:
        """Wait for item `number` of this participant's order; its item_id."""
        expect(self.page.locator("#item-heading")).to_have_text(f"Item {number} of {len(self.items)}", timeout=30_000)
        return self.order[number - 1]

    def rate(self, number: int, comment: str = "", screenshot: str | None = None, double_click: bool = False) -> None:
        """Set every scale of item `number` (values that differ by participant, item, answer and criterion), choose
        the second advice shown as the better on an A/B item, and submit (a `double_click` clicks Submit twice)."""
        item_id = self.expect_item(number)
        item = self.items[item_id]
        shown = [item["answers"][i] for i in answer_order(len(item["answers"]), self.code, item_id, SEED)]
        for label, answer in zip("AB", shown):
            assert answer["text"] in self.page.inner_text(f"#advice-{label}")
            values = [(number + 2 * "AB".index(label) + c + int(self.code[-1])) % 7 + 1 for c in range(len(CRITERIA))]
            for criterion, value in zip(CRITERIA, values):
                self.page.locator(f"#{criterion}-{label}").get_by_label(str(value), exact=True).check()
            self.ratings[(self.code, item_id, answer["system"])] = tuple(values)
        submit = self.page.get_by_role("button", name="Submit", exact=True)
        preferred = None
        if len(shown) == 2:  # refused until a preference is chosen too
            for criterion in CRITERIA:  # each scale's points on one line, in half of the page
                points = [self.page.locator(f"#{criterion}-{label} label").nth(i)
                          for label in "AB" for i in range(len(SCALE))]
                tops = {round(point.bounding_box()["y"]) for point in points}
                assert len(tops) == 1, f"the {criterion} scale wraps onto {len(tops)} lines"
            submit.click()
            expect(self.page.locator("#item-message")).to_contain_text("Choose which advice is better (A or B)")
            self.page.locator("#preferred").get_by_label("B", exact=True).check()
            expect(self.page.locator("#item-message")).to_have_text("")
            preferred = shown[1]["system"]
        if comment:
            self.page.fill("#comment textarea", comment)
        self.responses[(self.code, item_id)] = (False, preferred, comment)
        if screenshot:
            self.page.mouse.move(0, 0)  # off the last choice, whose dot is drawn once the pointer leaves it
            self.page.wait_for_timeout(500)
            self.page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
        submit.dblclick() if double_click else submit.click()
        # the next item or the thank-you (Gradio may drop a hidden screen from the page or keep it hidden)
        heading = f"Item {number} of {len(self.items)}"
        expect(self.page.locator("#item-heading:visible", has_text=heading)).to_have_count(0)

    def skip(self, number: int) -> None:
        self.responses[(self.code, self.expect_item(number))] = (True, None, "")
        self.page.get_by_role("button", name="Skip", exact=True).click()

    def expect_the_end(self, screenshot: str | None = None) -> None:
        expect(self.page.locator("#thanks")).to_have_text(f"Thank you — all {len(self.items)} items are done.",
                                                          timeout=30_000)
        expect(self.page.locator("#item")).to_be_hidden()
        if screenshot:
            self.page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)


@needs_chromium
@pytest.mark.slow
def test_two_participants_rate_in_the_browser_and_the_database_holds_exactly_their_ratings(served_study, browser):
    url, folder = served_study
    one_context, two_context = (browser.new_context(viewport={"width": 1200, "height": 800}) for _ in range(2))
    one = Participant(one_context.new_page(), "P01", folder)
    two = Participant(two_context.new_page(), "P02", folder)
    pair_number = next(n for n, item_id in enumerate(one.order, 1) if len(one.items[item_id]["answers"]) == 2)

    # participant one: the consent screen comes first, and a code must be a code
    one.page.goto(url)
    one.page.wait_for_selector("#consent", timeout=60_000)
    assert "Taking part in this listening study" in one.page.inner_text("#consent")
    expect(one.page.locator("#item")).to_be_hidden()
    one.page.screenshot(path=str(ARTIFACTS / "study_consent.png"), full_page=True)
    one.page.fill("#code input", "P01")
    one.page.get_by_role("button", name="Start").click()
    expect(one.page.locator("#welcome-message")).to_contain_text("Tick “I agree” to take part.")
    one.page.fill("#code input", "jane.doe@example.com")
    one.page.get_by_label("I agree").check()
    one.page.get_by_role("button", name="Start").click()
    expect(one.page.locator("#welcome-message")).to_contain_text("must be 1-40 letters, digits")
    one.start(url)

    # participant two starts meanwhile, rates two items and leaves
    two.start(url)
    two.rate(1)
    two.rate(2, comment="Clear advice.")
    two.expect_item(3)
    two.page.close()

    for number in range(1, len(one.order) + 1):
        one.expect_item(number)
        anchor = one.items[one.order[number - 1]]["anchor_stem"]
        assert f"The {anchor} " in one.page.inner_text("#context") and "the reference" in one.page.inner_text("#context")
        text = one.page.inner_text("#item")
        assert not any(word in text for word in ("model", "second", "correct", "too_loud", "too_quiet"))
        if number == 1:  # refused until every scale is set; then a double click counts once
            one.page.get_by_role("button", name="Submit", exact=True).click()
            expect(one.page.locator("#item-message")).to_contain_text("Set every scale before you submit")
            expect(one.page.locator("#mix #duration")).to_have_text("0:02")  # the player has loaded the item's WAV
            one.rate(number, double_click=True)
        elif number == pair_number:
            expect(one.page.locator("#answer-B")).to_be_visible()
            assert "Advice A" in one.page.inner_text("#advice-A") and "Advice B" in one.page.inner_text("#advice-B")
            assert "Which advice is better?" in one.page.inner_text("#preferred")
            one.rate(number, comment="B says how much.", screenshot="study_item_ab.png")
        elif number == 3:
            one.skip(number)
        else:
            expect(one.page.locator("#answer-B")).to_be_hidden()
            one.rate(number, screenshot="study_item.png")
    one.expect_the_end(screenshot="study_done.png")

    # participant two comes back in a new page with the same code: resumed at their third item
    two.page = two_context.new_page()
    two.start(url)
    two.expect_item(3)
    two.page.screenshot(path=str(ARTIFACTS / "study_resumed.png"), full_page=True)
    two.rate(3)
    two.rate(4)
    two.expect_the_end()
    for context in (one_context, two_context):
        context.close()

    database = StudyDatabase(folder / DATABASE_FILE)
    responses = {(row["participant"], row["item_id"]): (row["skipped"], row["preferred"], row["comment"])
                 for row in database.responses()}
    assert len(database.responses()) == len(responses) == 8
    assert responses == {**one.responses, **two.responses}
    ratings = {(row["participant"], row["item_id"], row["system"]): tuple(row[name] for name in CRITERIA)
               for row in database.ratings()}
    assert len(database.ratings()) == len(ratings) == 3 + 1 + 5  # P01: 3 rated items, one of them A/B; P02: 4 items
    assert ratings == {**one.ratings, **two.ratings}

    report = study_report(folder)
    assert report["counts"] == {"participants": 2, "responses": 8, "skipped": 1, "ratings": 9}
    assert report["preference"]["compared"] == 2 and report["preference"]["no_choice"] == 0
    assert sum(report["preference"]["counts"].values()) == 2
    assert report["means"]["model"]["effectiveness"]["n"] == 7 and report["means"]["second"]["conventions"]["n"] == 2
    assert (folder / "report" / "report.md").is_file()


@needs_chromium
@pytest.mark.slow
def test_the_study_page_serves_the_items_audio_but_never_the_database(served_study):
    url, folder = served_study
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}gradio_api/file={folder / DATABASE_FILE}", timeout=10)
    assert refused.value.code == 403
    assert urllib.request.urlopen(f"{url}gradio_api/file={folder / 'audio' / 'item-000.wav'}", timeout=10).status == 200

