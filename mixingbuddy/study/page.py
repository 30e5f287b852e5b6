"""The listening study's web page (`app.py --study STUDY_DIR`): a participant enters a code, agrees to the consent
text, then rates the study's items one at a time in their own seeded order, and resumes where they left off.

What a participant has answered lives in the database only, so a second visit, a second tab or a double click sees the
same next item; the page's state holds just the code and the item on screen.
"""

from __future__ import annotations

from pathlib import Path

from . import CONSENT_FILE, CONSENT_MARKER, CRITERIA, SCALE, answer_order, item_order, load_study
from .database import DATABASE_FILE, StudyDatabase

LABELS = ("A", "B")  # an A/B item's answers as shown, in the participant's blind order; the systems are never shown
# The seven points of a scale on one line, even in half of a 1,200 px page (an A/B item's column)
STUDY_CSS = """
.scale .wrap { flex-wrap: nowrap; gap: 4px; }
.scale .wrap label { flex: 1 1 0; min-width: 0; justify-content: center; padding-left: 4px; padding-right: 4px; }
"""


class Study:
    """A study folder as the page serves it: its items, consent text and database. Raises `ValueError` or `OSError`
    naming the file when `study.json`, `consent.md` or an item's audio is missing."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        study = load_study(self.folder)
        self.consent_file = self.folder / CONSENT_FILE
        if not self.consent_file.is_file():
            raise FileNotFoundError(f"{self.consent_file} does not exist: write the consent text participants read "
                                    "before they start (`mixingbuddy study prepare` writes a template).")
        self.consent = self.consent_file.read_text()
        self.seed = study["seed"]
        self.items = {item["item_id"]: item for item in study["items"]}
        self.audio = {item_id: (self.folder / item["audio"]).resolve() for item_id, item in self.items.items()}
        if missing := [path for path in self.audio.values() if not path.is_file()]:
            raise FileNotFoundError(f"{missing[0]} does not exist ({len(missing)} of the items' audio files are missing).")
        self.database = StudyDatabase(self.folder / DATABASE_FILE)  # a connection per call: safe from any thread

    def consent_is_template(self) -> bool:
        return CONSENT_MARKER in self.consent

    def next_item(self, code: str) -> tuple[int, dict] | None:
        """The first item of `code`'s order not answered yet and its number in that order (from 1); None when none is
        left."""
        answered = self.database.answered(code)
        order = item_order(list(self.items), code, self.seed)
        return next(((number, self.items[item_id]) for number, item_id in enumerate(order, 1)
                     if item_id not in answered), None)

    def answers(self, item: dict, code: str) -> list[dict]:
        """`item`'s answers in `code`'s blind order: the first is shown as Advice A."""
        return [item["answers"][i] for i in answer_order(len(item["answers"]), code, item["item_id"], self.seed)]


def anchor_sentence(stem: str) -> str:
    return (f"The {stem} is the reference: its level is right." if stem == "bass" else
            f"The {stem} are the reference: their level is right.")


def item_text(item: dict) -> str:
    """What the page says about an item beside its audio: the anchor and the stems in the mix (never the flaw)."""
    return f"**{anchor_sentence(item['anchor_stem'])}** Stems in the mix: {', '.join(item['stems_present'])}."


def chosen_ratings(answers: list[dict], values: list) -> dict[str, dict[str, int]] | None:
    """{system: {criterion: value}} from the scales of the answers shown (`values`: CRITERIA's order per answer, in
    the order shown); None while a scale is unset."""
    ratings = {}
    for number, answer in enumerate(answers):
        scales = values[number * len(CRITERIA) : (number + 1) * len(CRITERIA)]
        if any(value is None for value in scales):
            return None
        ratings[answer["system"]] = {name: int(value) for name, value in zip(CRITERIA, scales)}
    return ratings


def build_study_page(study: Study):
    """The study's page, a `gradio.Blocks`: a welcome screen (consent, code, "I agree"), an item screen, a thank-you."""
    import gradio as gr  # here, not above: importing gradio fails on a GRADIO_SERVER_PORT that is not a number

    hidden, visible = gr.update(visible=False), gr.update(visible=True)
    total = len(study.items)

    with gr.Blocks(title="MixingBuddy listening study") as page:
        participant = gr.State(None)  # {"code": the participant's code, "item": the item_id on screen or None}
        with gr.Column(elem_id="welcome") as welcome:
            gr.Markdown(study.consent, elem_id="consent")
            code = gr.Textbox(label="Your participant code", elem_id="code", max_lines=1,
                              info="The code you were given (letters, digits, - and _): never your name or e-mail. "
                                   "Enter it again later to continue where you left off.")
            agree = gr.Checkbox(label="I agree", elem_id="agree")
            start = gr.Button("Start", variant="primary")
            welcome_message = gr.Markdown(elem_id="welcome-message")
        with gr.Column(visible=False, elem_id="item") as item_screen:
            heading = gr.Markdown(elem_id="item-heading")
            audio = gr.Audio(label="The mix", type="filepath", interactive=False, buttons=[], elem_id="mix")
            context = gr.Markdown(elem_id="context")
            gr.Markdown("Rate the advice from 1 (poor) to 7 (excellent) on each scale.")
            columns, advice, scales = [], [], []
            with gr.Row():
                for label in LABELS:
                    with gr.Column(elem_id=f"answer-{label}") as column:
                        advice.append(gr.Markdown(elem_id=f"advice-{label}"))
                        scales += [gr.Radio(list(SCALE), label=name.capitalize(), info=description,
                                            elem_id=f"{name}-{label}", elem_classes=["scale"])
                                   for name, description in CRITERIA.items()]
                    columns.append(column)
            preferred = gr.Radio(list(LABELS), label="Which advice is better?", visible=False, elem_id="preferred")
            comment = gr.Textbox(label="Comment (optional)", lines=2, elem_id="comment")
            with gr.Row():
                submit = gr.Button("Submit", variant="primary", elem_id="submit")
                skip = gr.Button("Skip", elem_id="skip")
            item_message = gr.Markdown(elem_id="item-message")
        with gr.Column(visible=False, elem_id="done") as done:
            thanks = gr.Markdown(elem_id="thanks")

        def shown(code: str) -> dict:
            """The screen for `code`'s next item, its fields cleared, or the thank-you when none is left."""
            upcoming = study.next_item(code)
            if upcoming is None:
                return {participant: {"code": code, "item": None}, welcome: hidden, item_screen: hidden, done: visible,
                        thanks: f"## Thank you — all {total} items are done."}
            number, item = upcoming
            answers = study.answers(item, code)
            pair = len(answers) == 2
            return {
                participant: {"code": code, "item": item["item_id"]}, welcome: hidden, item_screen: visible,
                done: hidden, heading: f"## Item {number} of {total}", audio: str(study.audio[item["item_id"]]),
                context: item_text(item), columns[1]: gr.update(visible=pair),
                preferred: gr.update(value=None, visible=pair), comment: "", item_message: "",
                **{box: f"### Advice {label if pair else ''}\n\n{answer['text']}"
                   for box, label, answer in zip(advice, LABELS, answers)},
                **{scale: None for scale in scales},
            }

        def begin(code: str, agreed: bool) -> dict:
            if not agreed:
                return {welcome_message: "**Tick “I agree” to take part.**"}
            code = code.strip()
            try:
                study.database.register(code)
            except ValueError as err:
                return {welcome_message: f"**{err}** Enter the code you were given."}
            return shown(code)

        def answer(state: dict, choice: str | None, note: str, *values) -> dict:
            item = study.items[state["item"]]
            answers = study.answers(item, state["code"])
            ratings = chosen_ratings(answers, list(values))
            if ratings is None:
                return {item_message: "**Set every scale before you submit, or press Skip.**"}
            if len(answers) == 2 and choice is None:
                return {item_message: "**Choose which advice is better (A or B) before you submit, or press Skip.**"}
            better = None if choice is None else answers[LABELS.index(choice)]["system"]
            study.database.submit(state["code"], item["item_id"], ratings, better, note.strip())  # False: a repeat
            return shown(state["code"])

        def skip_item(state: dict, note: str) -> dict:
            study.database.submit(state["code"], state["item"], None, comment=note.strip(), skipped=True)
            return shown(state["code"])

        screens = [participant, welcome, item_screen, done, thanks, heading, audio, context, *columns, *advice,
                   *scales, preferred, comment, item_message]
        start.click(begin, inputs=[code, agree], outputs=[*screens, welcome_message])
        code.submit(begin, inputs=[code, agree], outputs=[*screens, welcome_message])
        submit.click(answer, inputs=[participant, preferred, comment, *scales], outputs=screens)
        skip.click(skip_item, inputs=[participant, comment], outputs=screens)
        preferred.input(lambda: "", outputs=item_message)  # the choice asked for is made: no stale request below
    return page
